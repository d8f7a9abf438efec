"""Request checks that apply to every URL, the API and the admin alike."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, JsonResponse

from jobplatform.api.exceptions import error_body


class RejectUnstorableInput:
    """400 ``API.INVALID_CHARACTERS`` for a NUL character in the path, query string or a header.

    PostgreSQL cannot store NUL in text, and a query parameter (an admin search, a list filter,
    ``Idempotency-Key``, a session cookie) may end up in a query: without this, that is a 500. A
    query string's invalid UTF-8 (an encoded surrogate) is already replaced by Django when it
    decodes it, and JSON bodies are checked by the API's parser
    (:mod:`jobplatform.api.parsers`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = _nul_in(request)
        if where:
            return JsonResponse(
                error_body(
                    "API.INVALID_CHARACTERS",
                    "the request may not contain NUL characters",
                    {"in": where},
                ),
                status=400,
            )
        return self.get_response(request)


def _nul_in(request: HttpRequest) -> str | None:
    if b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
        return "query string"
    if "\x00" in request.path_info:
        return "path"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
            return "header " + key[5:].replace("_", "-").title()
    return None
