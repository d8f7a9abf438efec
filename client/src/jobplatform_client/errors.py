"""What the client raises: one base class, and a typed error for every way a call can end badly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from jobplatform_client.models import Job


class JobplatformError(Exception):
    """The base of every error this package raises."""


class ApiError(JobplatformError):
    """The API answered with an error: ``{"error": {"code", "message", "details"}}`` and a status.

    ``code`` is the API's namespaced code (``JOBS.NOT_FOUND``, ``API.THROTTLED``, ...; listed in
    docs/errors.md). An error answer that is not in that shape (a proxy's HTML 502, say) gets
    the code ``HTTP.<status>`` and the start of its body as the message.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: Any = details if details is not None else {}
        self.method = method
        self.url = url
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response, retry_after: float | None) -> ApiError:
        request = response.request
        code, message, details = f"HTTP.{response.status_code}", "", None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            code, message, details = (
                error["code"],
                str(error.get("message", "")),
                error.get("details"),
            )
        else:
            message = response.text[:200].strip() or response.reason_phrase
        return cls(
            status=response.status_code,
            code=code,
            message=message,
            details=details,
            method=request.method,
            url=str(request.url),
            retry_after=retry_after,
        )

    def as_dict(self) -> dict[str, Any]:
        """The envelope as the API sent it, with the HTTP status beside it."""
        return {
            "error": {"code": self.code, "message": self.message, "details": self.details},
            "status": self.status,
        }


class TransportError(JobplatformError):
    """The API could not be reached, or the connection broke before an answer came back."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class WaitTimeout(JobplatformError):
    """``jobs.wait`` gave up before the job ended; ``job`` is how it was last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g}s")
        self.job = job
        self.timeout = timeout
