"""Renders every API error as ``{"error": {"code", "message", "details"}}``.

DRF alone turns a Django ``ValidationError`` into a 500 and leaves codes un-namespaced; this handler
maps domain errors, DRF's own exceptions and Django's to one shape with a namespaced code.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from jobplatform.errors import DomainError

logger = logging.getLogger("jobplatform.api")

_DRF_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    # Most specific first: the first isinstance match wins.
    exceptions.ParseError: ("API.MALFORMED_REQUEST", "The request body is not valid JSON."),
    exceptions.AuthenticationFailed: ("AUTH.INVALID_CREDENTIALS", ""),
    exceptions.NotAuthenticated: ("AUTH.NOT_AUTHENTICATED", ""),
    exceptions.PermissionDenied: ("AUTH.PERMISSION_DENIED", ""),
    exceptions.NotFound: ("API.NOT_FOUND", ""),
    exceptions.MethodNotAllowed: ("API.METHOD_NOT_ALLOWED", ""),
    exceptions.NotAcceptable: ("API.NOT_ACCEPTABLE", ""),
    exceptions.UnsupportedMediaType: ("API.UNSUPPORTED_MEDIA_TYPE", ""),
    exceptions.Throttled: ("API.THROTTLED", ""),
    exceptions.ValidationError: ("API.VALIDATION_ERROR", "The request is not valid."),
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        set_rollback()
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.http_status, headers=headers
        )
    if isinstance(exc, OperationalError | InterfaceError):
        # PostgreSQL is down or restarting: a clear, retryable answer, never a traceback.
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("API.DATABASE_UNAVAILABLE", "The database is unavailable; retry shortly."),
            status=503,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        field_errors = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field": exc.messages}
        )
        return Response(
            error_body("API.VALIDATION_ERROR", "The request is not valid.", field_errors), 400
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500
    set_rollback()
    code, message = next(
        ((c, m) for kind, (c, m) in _DRF_CODES.items() if isinstance(exc, kind)),
        (f"API.{str(exc.default_code).upper()}", ""),
    )
    details = exc.detail if isinstance(exc, exceptions.ValidationError) else {}
    if not message:
        # simplejwt's token errors carry {"detail": ..., "messages": [...]}: the detail says it.
        detail = exc.detail
        if isinstance(detail, dict) and "detail" in detail:
            detail = detail["detail"]
        message = str(detail)
    response = Response(error_body(code, message, details), status=exc.status_code)
    # APIView sets auth_header on the exception; Throttled sets wait in its __init__. Neither is
    # declared by djangorestframework-stubs, hence getattr.
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        response["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        response["Retry-After"] = str(int(wait))
    return response


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    """handler404 for URLs that match no route: JSON, not Django's HTML page."""
    return JsonResponse(error_body("API.NOT_FOUND", "No such resource."), status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: the traceback goes to the log, never to the client."""
    return JsonResponse(error_body("API.INTERNAL_ERROR", "Internal server error."), status=500)


def bad_request(request: HttpRequest, exception: Exception) -> JsonResponse:
    """handler400 (a SuspiciousOperation: too many query parameters, a bad Host): JSON."""
    return JsonResponse(error_body("API.BAD_REQUEST", "Bad request."), status=400)
