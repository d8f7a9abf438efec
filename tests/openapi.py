"""Every API response the test suite receives is checked against the OpenAPI document.

:class:`ValidateResponses` is a middleware of the test settings (tests/settings.py), first in the
chain, so it sees every response of the API as the client gets it: the test client's requests,
the fuzz test's, and those of the live server (gunicorn) the client's tests talk to. A response
that the document does not describe raises an AssertionError naming the operation, the status
and the mismatch: in a test-client request it fails the test; in the live server it is logged
and the client gets a 500.

What is checked, for a path under ``/api/v1/``:

- a route and method the document has: the status must be one it lists, and the JSON body must
  match that response's schema; objects with ``properties`` are closed for the check (no field
  the document does not name), though the published document leaves them open so that clients
  survive fields added later; an error's ``code`` must be one the response lists;
- a route without that method (405, or the 401/403/429 DRF answers before it looks the method
  up) or no route at all (404): the error envelope.

Cost: the document is generated once per process (about a second) and each response's validator
compiled once (the session's figures are printed at the end: ``pytest -s`` shows them).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:jobplatform:openapi"
ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "pattern": r"^[A-Z]+\.[A-Z_]+$"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its ``properties`` refusing other ones."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not ({"allOf", "anyOf", "oneOf"} & result.keys())
    ):
        result["additionalProperties"] = False
    return result


def pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Stats:
    responses: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    unmatched: int = 0  # paths under /api/v1/ with no route: checked as an envelope only
    lock: threading.Lock = field(default_factory=threading.Lock)


class Document:
    """The generated document, compiled lazily: one validator per operation and status."""

    def __init__(self) -> None:
        from drf_spectacular.generators import SchemaGenerator
        from drf_spectacular.renderers import OpenApiJsonRenderer

        schema = SchemaGenerator().get_schema(request=None, public=True)
        self.raw: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(schema))
        resource = Resource.from_contents(closed(self.raw), default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(BASE, resource)
        self._validators: dict[tuple[str, ...], Draft202012Validator] = {}
        self._lock = threading.Lock()
        self.envelope = Draft202012Validator(ENVELOPE)

    def operation(self, path: str, method: str) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = self.raw["paths"].get(path, {}).get(method)
        return operation

    def validator(self, path: str, method: str, status: str) -> Draft202012Validator | None:
        """The validator of that response's JSON body; None when it has none (204)."""
        key = (path, method, status)
        with self._lock:
            if key not in self._validators:
                response = self.raw["paths"][path][method]["responses"][status]
                if "application/json" not in response.get("content", {}):
                    return None
                ref = pointer("paths", path, method, "responses", status)
                self._validators[key] = Draft202012Validator(
                    {"$ref": f"{BASE}#/{ref}/content/application~1json/schema"},
                    registry=self._registry,
                    format_checker=FormatChecker(),
                )
            return self._validators[key]


_document: Document | None = None
_document_lock = threading.Lock()
STATS = Stats()


def document() -> Document:
    global _document
    with _document_lock:
        if _document is None:
            started = time.perf_counter()
            _document = Document()
            STATS.load_seconds = time.perf_counter() - started
        return _document


def openapi_path(route: str) -> str:
    """A Django route (``api/v1/jobs/<uuid:job_id>/``) as the document's path."""
    path, out = route, []
    while "<" in path:
        start, end = path.index("<"), path.index(">")
        out.append(path[:start] + "{" + path[start + 1 : end].rpartition(":")[2] + "}")
        path = path[end + 1 :]
    return "/" + "".join(out) + path


def problems(request: HttpRequest, response: HttpResponse) -> list[str]:
    """How the response differs from what the document says of it (empty: it conforms)."""
    method = str(request.method).lower()
    if method in ("head", "options"):
        return []  # no body (HEAD) or DRF's metadata (OPTIONS): not part of the contract
    status = str(response.status_code)
    body = _json(response)
    doc = document()
    try:
        route = resolve(request.path_info).route
    except Resolver404:
        route = None
    operation = doc.operation(openapi_path(route), method) if route else None
    if operation is None:
        if route is None:
            with STATS.lock:
                STATS.unmatched += 1
        # DRF authenticates, authorises and throttles before it looks the method up.
        if response.status_code in (401, 403, 404, 405, 429) and body is not None:
            return [e.message for e in doc.envelope.iter_errors(body)]
        return [f"{method.upper()} {request.path} is not in the document ({status})"]
    where = f"{method.upper()} {openapi_path(route or '')} -> {status}"
    if status not in operation["responses"]:
        listed = ", ".join(sorted(operation["responses"]))
        return [f"{where}: the document lists only {listed}; body {body!r:.300}"]
    validator = doc.validator(openapi_path(route or ""), method, status)
    if validator is None:
        return [] if not response.content else [f"{where}: a body where the document has none"]
    if body is None:
        return [f"{where}: not a JSON body: {response.content[:200]!r}"]
    return [
        f"{where}: at {'/'.join(map(str, e.absolute_path)) or 'the top'}: {e.message:.300}"
        for e in validator.iter_errors(body)
    ]


def _json(response: HttpResponse) -> Any:
    if not response.get("Content-Type", "").startswith("application/json"):
        return None
    if getattr(response, "streaming", False):
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


class ValidateResponses:
    """The middleware: every ``/api/v1/`` response checked against the document."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path_info.startswith("/api/v1/"):
            return response
        started = time.perf_counter()
        found = problems(request, response)
        with STATS.lock:
            STATS.responses += 1
            STATS.seconds += time.perf_counter() - started
        if found:
            raise AssertionError(
                "the response does not match the OpenAPI document:\n  " + "\n  ".join(found)
            )
        return response


def schema_copy() -> dict[str, Any]:
    """The document as served (open objects), for tests that read it."""
    return copy.deepcopy(document().raw)
