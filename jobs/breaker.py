"""The circuit breaker of an http host, as a pure state machine (docs/flow-control.md).

``jobs.services.dependencies`` reads a breaker's row, applies these and writes the result;
the release asks :func:`holds` and :func:`probe_allowed`. ``tests/jobs/test_breaker.py`` walks
them from tables, as the retry policy's tests do.

closed ──(``failures`` transient failures within ``window`` seconds)──► open
open ──(``cooldown`` seconds later, the release lets one job through: the probe)──► half_open
half_open ──(a request to the host succeeds)──► closed
half_open ──(a request to the host fails transiently)──► open, for another ``cooldown``
An operator may open a breaker by hand (it stays open, no probe) and close any.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int  # transient failures within the window that open the breaker; 0: never
    window: float  # seconds
    cooldown: float  # seconds an opened breaker holds jobs before a probe goes

    @classmethod
    def from_settings(cls) -> BreakerPolicy:
        return cls(
            failures=settings.JOBPLATFORM_BREAKER_FAILURES,
            window=settings.JOBPLATFORM_BREAKER_WINDOW,
            cooldown=settings.JOBPLATFORM_BREAKER_COOLDOWN,
        )


@dataclass(frozen=True)
class Breaker:
    state: str = CLOSED
    failures: int = 0
    window_started_at: datetime | None = None
    opened_at: datetime | None = None
    retry_at: datetime | None = None  # None while open: opened by hand
    manual: bool = False
    probe_job: UUID | None = None
    probe_at: datetime | None = None


def after_failure(breaker: Breaker, *, now: datetime, policy: BreakerPolicy) -> Breaker:
    """A request to the host failed transiently (5xx, 408, 429, timeout, connection)."""
    window = timedelta(seconds=policy.window)
    started = breaker.window_started_at
    if started is None or now - started >= window:
        counted = replace(breaker, failures=1, window_started_at=now)
    else:
        counted = replace(breaker, failures=breaker.failures + 1)
    if breaker.manual or breaker.state == OPEN:
        return counted
    if breaker.state == HALF_OPEN or (policy.failures and counted.failures >= policy.failures):
        return opened(counted, now=now, retry_at=now + timedelta(seconds=policy.cooldown))
    return counted


def after_success(breaker: Breaker) -> Breaker:
    """A request to the host succeeded: a half-open breaker closes."""
    if breaker.state == HALF_OPEN and not breaker.manual:
        return Breaker()
    return breaker


def opened(breaker: Breaker, *, now: datetime, retry_at: datetime | None) -> Breaker:
    """Open: by the failures (``retry_at``: when a probe may go), or by hand (None)."""
    return replace(
        breaker,
        state=OPEN,
        opened_at=now,
        retry_at=retry_at,
        manual=retry_at is None,
        probe_job=None,
        probe_at=None,
    )


def holds(breaker: Breaker) -> bool:
    """Whether the host's jobs wait (all but a probe)."""
    return breaker.state != CLOSED


def probe_allowed(breaker: Breaker, *, now: datetime, policy: BreakerPolicy) -> bool:
    """Whether the release may let one job of the host through as the probe: the breaker is
    open past its retry time, or half-open with no probe released within ``cooldown`` (a
    probe that never reached the host, being cancelled or failing an earlier step)."""
    if breaker.manual:
        return False
    if breaker.state == OPEN:
        return breaker.retry_at is not None and breaker.retry_at <= now
    if breaker.state == HALF_OPEN:
        return (
            breaker.probe_job is None
            or breaker.probe_at is None
            or now - breaker.probe_at >= timedelta(seconds=policy.cooldown)
        )
    return False
