"""What an attempt tells the metrics and the logs: claimed, each step, ended."""

from __future__ import annotations

from functools import cache
from typing import Any

from executions.services.claim import Claim
from executions.services.outcomes import RunOutcome
from jobplatform import logs, metrics


@cache
def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per process: ``labels()`` checks and converts
    the values and takes the metric's lock at every call (2 µs, five times per attempt), for
    a child that stays the same object (nothing removes one; a forked pool process's inherited
    child rewrites its own file, as prometheus-client checks the pid at every write)."""
    return metric.labels(*values)


def attempt_claimed(claim: Claim) -> None:
    """The attempt started: counted, its start lag observed, its trace id on every line."""
    if claim.trace_id:  # the job's own, whatever the message carried
        logs.bind(trace_id=claim.trace_id)
    _child(metrics.ATTEMPTS_STARTED, claim.queue).inc()
    if claim.due_at is not None:
        lag = (claim.started_at - claim.due_at).total_seconds()
        _child(metrics.START_LAG, claim.queue).observe(max(0.0, lag))


def step_started(index: int, step_type: str) -> None:
    logs.bind(step=index, step_type=step_type)


def step_ended(step_type: str, seconds: float) -> None:
    _child(metrics.STEP_SECONDS, step_type).observe(seconds)


def attempt_ended(claim: Claim, outcome: RunOutcome, seconds: float) -> None:
    _child(metrics.ATTEMPT_SECONDS, claim.queue).observe(seconds)
    _child(metrics.ATTEMPTS_FINISHED, claim.queue, outcome_label(outcome)).inc()


def outcome_label(outcome: RunOutcome) -> str:
    """succeeded, retried, failed (dead-lettered) or cancelled."""
    if outcome.status == "failed" and outcome.retry_in is not None:
        return "retried"
    return outcome.status
