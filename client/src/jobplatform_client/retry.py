"""When the client sends a request again, and how long it waits first: a pure policy."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of answers that say "not now": 429 (throttled, or admission control) and
    503 (the database is restarting).

    Which requests may be retried is the client's decision (see ``Client``); this only says how
    often and after how long. A ``Retry-After`` is honoured exactly; without one, the delay
    doubles from ``backoff`` up to ``backoff_max``, each one drawn between half and all of it.
    A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the error is raised,
    carrying it (``ApiError.retry_after``), for the caller to decide.
    """

    attempts: int = 5  # tries in all, the first one included
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, *, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait after try number ``attempt`` (1 for the first) failed in a way worth
        trying again; ``None``: give up."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        ceiling = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    ``None`` when absent or unreadable; a date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
