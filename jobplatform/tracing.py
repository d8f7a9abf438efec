"""The trace id of a request: from its ``traceparent`` (W3C) or ``X-Request-ID`` header, or new.

The id is bound to every log line of the request, answered in ``X-Request-ID``, and stored on
the jobs the request submits (``Job.trace_id``), whose run_job messages carry it to the worker.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping

from django.http import HttpRequest, HttpResponseBase
from structlog.contextvars import get_contextvars

from jobplatform import logs

# version "-" trace-id "-" parent-id "-" flags (https://www.w3.org/TR/trace-context/)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# A client's own request id, kept as it is when it fits Job.trace_id (32 characters).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,32}")

request_log = logging.getLogger("jobplatform.request")


def new_trace_id() -> str:
    """32 lowercase hex digits: a valid W3C trace id."""
    return uuid.uuid4().hex


def trace_id_from(headers: Mapping[str, str]) -> str | None:
    """The trace id a request's headers give, if any: ``traceparent`` first, then
    ``X-Request-ID`` (a UUID loses its dashes; anything else longer than 32 characters or
    outside ``[A-Za-z0-9._:-]`` is ignored, and the request gets a new id)."""
    parent = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip().lower())
    if parent is not None:
        version, trace_id = parent.group(1), parent.group(2)
        if version != "ff" and trace_id != "0" * 32:
            return trace_id
    given = headers.get("X-Request-ID", "").strip()
    if not given:
        return None
    try:
        return uuid.UUID(given).hex
    except ValueError:
        pass
    return given if _REQUEST_ID.fullmatch(given) else None


def current_trace_id() -> str | None:
    """The trace id bound to this request (or task), if any."""
    value = get_contextvars().get("trace_id")
    return str(value) if value else None


class RequestContextMiddleware:
    """Binds the request's trace id to every log line it causes, answers it in ``X-Request-ID``
    and logs one line per request (method, path, status, duration)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        trace_id = trace_id_from(request.headers) or new_trace_id()
        logs.clear()  # a gunicorn thread serves one request after another
        logs.bind(trace_id=trace_id)
        began = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = trace_id
            fields = {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - began) * 1000, 1),
            }
            request_log.info("request", extra={"fields": fields})
            return response
        finally:
            logs.clear()
