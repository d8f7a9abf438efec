"""The OpenAPI document (drf-spectacular), generated from the views (docs/api.md).

Views are plain ``APIView``s whose parsers and renderers are plain code, so each method declares
its request and response shapes with ``@extend_schema`` and the schema-only serializers of its
app's ``api/schemas.py``. What every view shares is added here, by :class:`AutoSchema`:

- **errors**: the envelope ``{"error": {"code", "message", "details"}}`` for each status the
  operation can answer, the ``code`` an enum of the codes it can answer with. The codes are the
  view's own (its ``error_codes``: method → status → codes, declared beside
  ``required_permissions``) and those every view of its kind answers (:func:`common_errors`:
  authentication, the key's scope, the JSON parser's limits, throttling, the database);
- **lists**: a view with a ``pagination_class`` answers its GET with a cursor page, and its
  ``filterset_class`` gives the query parameters;
- **authentication**: Token, Api-Key, Bearer (JWT) and the admin's session cookie.

``tests/openapi.py`` validates every response the test suite receives against this document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework.pagination import BasePagination
from rest_framework.permissions import AllowAny

# Statuses an error may have, and what each means; a response for each that the operation can
# answer is added with the codes it may carry.
ERROR_STATUS_TEXT = {
    400: "The request is not valid.",
    401: "No valid credentials.",
    403: "The credentials do not allow this.",
    404: "No such object, or not one the caller may see.",
    406: "The Accept header asks for something other than JSON.",
    409: "The object is not in a state that allows this.",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    429: "Too many requests: wait Retry-After seconds.",
    503: "The database is unavailable: retry after Retry-After seconds.",
}

# The JSON parser's refusals (jobplatform.api.parsers), for every request that has a body.
BODY_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "API.MALFORMED_REQUEST",
        "API.JSON_TOO_DEEP",
        "API.NUMBER_OUT_OF_RANGE",
        "API.INVALID_CHARACTERS",
    ),
    413: ("API.BODY_TOO_LARGE",),
    415: ("API.UNSUPPORTED_MEDIA_TYPE",),
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

ErrorCodes = Mapping[int, Sequence[str]]


def merge_errors(*parts: ErrorCodes) -> dict[int, list[str]]:
    """The union of several status → codes maps, each code once, in order."""
    merged: dict[int, list[str]] = {}
    for part in parts:
        for status, codes in part.items():
            known = merged.setdefault(status, [])
            known.extend(code for code in codes if code not in known)
    return merged


def common_errors(view: Any, method: str, *, has_body: bool, is_list: bool) -> dict[int, list[str]]:
    """What any operation of its kind may answer, whatever the view does."""
    always: dict[int, list[str]] = {
        # jobplatform.middleware: NUL in the query string or a header; handler400.
        400: ["API.INVALID_CHARACTERS", "API.BAD_REQUEST"],
        406: ["API.NOT_ACCEPTABLE"],
        503: ["API.DATABASE_UNAVAILABLE"],
    }
    parts: list[ErrorCodes] = [always]
    if view.get_throttles():
        parts.append({429: ["API.THROTTLED"]})
    if view.get_authenticators():
        # A wrong credential is refused even where none is needed.
        parts.append({401: ["AUTH.INVALID_CREDENTIALS"]})
    if not any(isinstance(p, AllowAny) for p in view.get_permissions()):
        parts.append(
            {
                401: ["AUTH.NOT_AUTHENTICATED"],
                403: ["AUTH.PERMISSION_DENIED", "AUTH.INSUFFICIENT_SCOPE"],
            }
        )
    if has_body:
        parts.append(BODY_ERRORS)
    if is_list:
        parts.append({400: ["API.INVALID_CURSOR"]})
        if getattr(view, "filterset_class", None) is not None:
            parts.append({400: ["API.VALIDATION_ERROR"]})
    return merge_errors(*parts)


def error_schema(codes: Iterable[str]) -> dict[str, Any]:
    """The error envelope whose code is one of ``codes``."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(codes)},
                    "message": {"type": "string"},
                    "details": {
                        "type": "object",
                        "description": "Machine-readable context: the fields in error, limits, "
                        "the state found. A validation error maps each field to its messages.",
                    },
                },
            }
        },
    }


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, with the platform's errors, lists and filters."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return self.method == "GET" and getattr(self.view, "pagination_class", None) is not None

    def _get_paginator(self) -> BasePagination | None:
        pagination_class = getattr(self.view, "pagination_class", None)
        return pagination_class() if self._is_list_view() and pagination_class else None

    def _get_filter_parameters(self) -> list[dict[str, Any]]:
        filterset = getattr(self.view, "filterset_class", None)
        if self.method != "GET" or filterset is None:
            return []
        extension = DjangoFilterExtension(DjangoFilterBackend())
        model = filterset._meta.model
        return [
            parameter
            for name, field in filterset.base_filters.items()
            for parameter in extension.resolve_filter_field(self, model, filterset, name, field)
        ]

    def get_serializer_name(self, serializer: Any, direction: Any) -> str:
        """The apps' schema-only serializers are named ``...Schema``: the component is not."""
        name = super().get_serializer_name(serializer, direction)
        return name.removesuffix("Schema") if name.endswith("Schema") else name

    def resolve_serializer(
        self, serializer: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        # A PATCH body is partial unless its serializer says it is not (``whole``: a job's
        # PATCH needs its one field).
        if getattr(serializer, "whole", False) and getattr(serializer, "partial", False):
            serializer = copy.copy(serializer)
            serializer.partial = False
        return super().resolve_serializer(serializer, direction, bypass_extensions)

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        # (untyped upstream; a super() call is not covered by untyped_calls_exclude)
        schema: dict[str, Any] = super()._map_basic_serializer(  # type: ignore[no-untyped-call]
            serializer, direction
        )
        if direction == "request" and getattr(serializer, "closed", False):
            schema["additionalProperties"] = False  # the parser refuses unknown fields by name
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        own: ErrorCodes = getattr(self.view, "error_codes", {}).get(self.method, {})
        has_body = self.method in BODY_METHODS
        errors = merge_errors(
            common_errors(self.view, self.method, has_body=has_body, is_list=self._is_list_view()),
            own,
        )
        for status, codes in sorted(errors.items()):
            text = ERROR_STATUS_TEXT.get(status, "An error.")
            schema = error_schema(codes)
            declared = responses.get(str(status))
            if declared is not None:
                # The view answers this status with a body of its own (readiness's 503), and
                # the platform's error (the database's 503) may answer it too.
                own_schema = declared["content"]["application/json"]["schema"]
                text = f"{declared['description']}; or: {text}"
                schema = {"oneOf": [own_schema, schema]}
            responses[str(status)] = {
                "description": f"{text} Codes: {', '.join(sorted(codes))}.",
                "content": {"application/json": {"schema": schema}},
            }
        return responses


# --- authentication schemes -------------------------------------------------------------------


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "jobplatform.api.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Authorization: Api-Key <prefix>.<secret>`: a key made with "
            "POST /api/v1/keys/ or in the admin; its scopes (read, write) limit the methods.",
        }


class JwtScheme(OpenApiAuthenticationExtension):
    target_class = "jobplatform.api.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 (a scheme name, not a secret)
            bearer_format="JWT",
        )
        scheme["description"] = "An access token from POST /api/v1/auth/token/."
        return scheme
