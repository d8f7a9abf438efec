"""What an attempt tells the metrics and the logs: claimed, each step, ended."""

from __future__ import annotations

from executions.services.claim import Claim
from executions.services.outcomes import RunOutcome
from jobplatform import logs, metrics


def attempt_claimed(claim: Claim) -> None:
    """The attempt started: counted, its start lag observed, its trace id on every line."""
    if claim.trace_id:  # the job's own, whatever the message carried
        logs.bind(trace_id=claim.trace_id)
    metrics.ATTEMPTS_STARTED.labels(claim.queue).inc()
    if claim.due_at is not None:
        lag = (claim.started_at - claim.due_at).total_seconds()
        metrics.START_LAG.labels(claim.queue).observe(max(0.0, lag))


def step_started(index: int, step_type: str) -> None:
    logs.bind(step=index, step_type=step_type)


def step_ended(step_type: str, seconds: float) -> None:
    metrics.STEP_SECONDS.labels(step_type).observe(seconds)


def attempt_ended(claim: Claim, outcome: RunOutcome, seconds: float) -> None:
    metrics.ATTEMPT_SECONDS.labels(claim.queue).observe(seconds)
    metrics.ATTEMPTS_FINISHED.labels(claim.queue, outcome_label(outcome)).inc()


def outcome_label(outcome: RunOutcome) -> str:
    """succeeded, retried, failed (dead-lettered) or cancelled."""
    if outcome.status == "failed" and outcome.retry_in is not None:
        return "retried"
    return outcome.status
