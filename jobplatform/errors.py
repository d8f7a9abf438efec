"""One error vocabulary for every layer: services raise these, the API renders them.

A code is namespaced by app (``JOBS.UNKNOWN_STEP_TYPE``); the HTTP status follows the class.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    http_status = 400
    retry_after: int | None = None  # seconds: sent as the Retry-After header

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class InvalidInput(DomainError):
    """The request is well formed but its content is not acceptable."""

    http_status = 400


class NotFound(DomainError):
    """The object does not exist, or the caller may not see it (never tell the two apart)."""

    http_status = 404


class Conflict(DomainError):
    """The object is not in a state that allows the action."""

    http_status = 409


class PayloadTooLarge(DomainError):
    """The request is larger than the platform accepts."""

    http_status = 413


class Forbidden(DomainError):
    """The caller is known but may not do this (their role, or their API key's scopes)."""

    http_status = 403


class TooManyRequests(DomainError):
    """The platform refuses more work from the caller for now: try again after ``retry_after``."""

    http_status = 429

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None, *, retry_after: int
    ) -> None:
        super().__init__(code, message, details)
        self.retry_after = retry_after
