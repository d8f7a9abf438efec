"""Running one attempt of a job: claim, run the steps, record every outcome.

Every write below is fenced by ``status = 'running' AND attempts = <this attempt>``: an attempt
whose job was cancelled (or, later, taken over by another attempt) finds nothing to update, and
stops instead of overwriting the newer state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from deadletter.models import DeadLetter
from deadletter.services import dead_letter_record
from executions.heartbeat import heartbeat
from executions.models import Execution, StepResult
from executions.timeouts import step_deadline
from jobplatform.db import prepared_cursor
from jobs.dispatcher import publish_attempts
from jobs.retry import RetryPolicy, next_delay
from jobs.services import ReleasedJob
from jobs.steps import PermanentStepError, StepContext, StepError, StepStopped, get_step

logger = logging.getLogger("jobplatform.executions")


@dataclass(frozen=True)
class RunOutcome:
    """What the Celery task must do after the attempt: nothing, or publish the next attempt."""

    status: str  # "duplicate", or the attempt's Execution.Status
    retry_in: float | None = None
    next_attempt: int | None = None


@dataclass(frozen=True)
class Claim:
    job_id: UUID
    attempt: int
    execution_id: int
    started_at: datetime
    steps: list[dict[str, Any]]
    input: Any
    next_step: int
    step_outputs: list[Any]
    policy: RetryPolicy
    timeout: int
    retry_base: int = 0  # attempts before the current retry budget (a manual retry resets it)
    worker: str = ""


# One statement, so one round trip and one commit: the claim of the job and the attempt's row
# are atomic without a transaction block (the hot path: every attempt pays for it).
_CLAIM_SQL = """
WITH claimed AS (
    UPDATE jobs_job
    SET status = 'running', attempts = attempts + 1, next_attempt_at = NULL,
        started_at = COALESCE(started_at, %(now)s), updated_at = %(now)s, version = version + 1
    WHERE id = %(job)s AND status IN ('queued', 'retrying') AND attempts = %(attempt)s - 1
    RETURNING id, steps, input, next_step, step_outputs,
              max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base
), execution AS (
    INSERT INTO executions_execution
        (job_id, attempt, status, worker, delivery_id, started_at, heartbeat_at, will_retry)
    SELECT id, %(attempt)s, 'running', %(worker)s, %(delivery)s, %(now)s, %(now)s, false
    FROM claimed
    RETURNING id
)
SELECT execution.id, steps, input, next_step, step_outputs,
       max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base
FROM claimed, execution
"""


def _json(value: Any) -> Any:
    # Django loads jsonb columns as text on raw cursors (JSONField decodes them itself).
    return json.loads(value) if isinstance(value, str) else value


def execution_claim(*, job_id: UUID, attempt: int, delivery_id: str, worker: str) -> Claim | None:
    """QUEUED|RETRYING -> RUNNING for attempt ``attempt``, with its Execution row; None if taken.

    The message names the attempt it starts, so a second delivery of it — while the attempt runs,
    after it finished, or after the job moved on to a later attempt — matches no row.
    """
    now = timezone.now()
    params = {
        "now": now,
        "job": job_id,
        "attempt": attempt,
        "worker": worker,
        "delivery": delivery_id,
    }
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    (
        execution_id,
        steps,
        job_input,
        next_step,
        outputs,
        max_retries,
        backoff,
        backoff_max,
        jitter,
        timeout,
        retry_base,
    ) = row
    return Claim(
        job_id=job_id,
        attempt=attempt,
        execution_id=execution_id,
        started_at=now,
        steps=_json(steps),
        input=_json(job_input),
        next_step=next_step,
        step_outputs=_json(outputs),
        policy=RetryPolicy(
            max_retries=max_retries, backoff=backoff, backoff_max=backoff_max, jitter=jitter
        ),
        timeout=timeout,
        retry_base=retry_base,
        worker=worker,
    )


def execution_run(*, job_id: UUID, attempt: int, delivery_id: str, worker: str) -> RunOutcome:
    """Claim attempt ``attempt`` of the job and run its steps from where the last one stopped."""
    claim = execution_claim(job_id=job_id, attempt=attempt, delivery_id=delivery_id, worker=worker)
    if claim is None:
        logger.info(
            "job %s attempt %d: nothing to claim (delivery %s)", job_id, attempt, delivery_id
        )
        return RunOutcome(status="duplicate")
    stop = heartbeat().track(claim.execution_id)
    try:
        return _run_steps(claim, stop)
    finally:
        heartbeat().untrack(claim.execution_id)


def _run_steps(claim: Claim, stop: threading.Event) -> RunOutcome:
    outputs = list(claim.step_outputs)
    deadline = time.monotonic() + claim.timeout
    for index in range(claim.next_step, len(claim.steps)):
        spec = claim.steps[index]
        left = deadline - time.monotonic()
        ctx = StepContext(
            job_id=claim.job_id,
            attempt=claim.attempt,
            step_index=index,
            input=claim.input,
            outputs=tuple(outputs),
            timeout=min(left, spec.get("timeout") or left),
            stop=stop,
        )
        started_at = timezone.now()
        began = time.perf_counter()
        try:
            output, error = _run_step(spec, ctx)
        except StepStopped:
            return _attempt_cancelled(claim)
        result = StepRecord(
            index=index,
            type=spec["type"],
            status=StepResult.Status.FAILED if error else StepResult.Status.SUCCEEDED,
            output=output,
            error=error,
            started_at=started_at,
            duration_ms=(time.perf_counter() - began) * 1000,
        )
        if error is not None:
            return _attempt_failed(claim, result, error)
        outputs.append(output)
        if index == len(claim.steps) - 1:
            return _attempt_succeeded(claim, result, outputs)
        if not _step_done(claim, result, outputs):
            return _attempt_cancelled(claim)
    # A pipeline with nothing left to run (resumed past its last step) succeeds as it is.
    return _attempt_succeeded(claim, None, outputs)


def _run_step(spec: dict[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any] | None]:
    """Run one step; return (output, None) or (None, error). Unexpected exceptions are transient.

    StepStopped (the job was cancelled while the step ran) propagates: it is not a failure.
    """
    step_type = get_step(spec["type"])
    try:
        if step_type is None:
            raise PermanentStepError(
                f"step type {spec['type']!r} is no longer registered", code="STEP.UNKNOWN_TYPE"
            )
        with step_deadline(ctx.timeout):
            output = step_type.run(spec.get("params", {}), ctx)
        try:
            json.dumps(output)
        except (TypeError, ValueError) as exc:
            raise PermanentStepError(
                f"step returned an output that is not JSON: {exc}", code="STEP.OUTPUT_NOT_JSON"
            ) from exc
    except StepStopped:
        raise
    except Exception as exc:
        return None, _error_record(exc, spec["type"], ctx.step_index)
    return output, None


def _error_record(exc: BaseException, step_type: str, index: int) -> dict[str, Any]:
    permanent = isinstance(exc, StepError) and exc.permanent
    return {
        "type": type(exc).__name__,
        "code": exc.code if isinstance(exc, StepError) else "STEP.UNEXPECTED_ERROR",
        "message": str(exc),
        "permanent": permanent,
        "step_index": index,
        "step_type": step_type,
        "traceback": "".join(traceback.format_exception(exc)),
    }


@dataclass(frozen=True)
class StepRecord:
    """What one step of an attempt did, on its way into executions_stepresult."""

    index: int
    type: str
    status: str
    output: Any
    error: dict[str, Any] | None
    started_at: datetime
    duration_ms: float

    def params(self, claim: Claim) -> dict[str, Any]:
        return {
            "execution": claim.execution_id,
            "index": self.index,
            "type": self.type,
            "step_status": self.status,
            "output": None if self.output is None else json.dumps(self.output),
            "error": None if self.error is None else json.dumps(self.error),
            "step_started_at": self.started_at,
            "duration_ms": self.duration_ms,
        }


# The step's result and the job's resume point in one statement: one round trip, one commit.
# Recorded only while the attempt is still open: an attempt the reaper declared lost (its worker
# was only partitioned away) must not add results that a later attempt also records.
_INSERT_STEP = """
INSERT INTO executions_stepresult
    (execution_id, index, type, status, output, error, started_at, duration_ms)
SELECT %(execution)s, %(index)s, %(type)s, %(step_status)s, %(output)s, %(error)s,
       %(step_started_at)s, %(duration_ms)s
WHERE EXISTS (
    SELECT FROM executions_execution WHERE id = %(execution)s AND status = 'running'
)
"""

_PROGRESS_JOB = """
UPDATE jobs_job SET next_step = %(next_step)s, step_outputs = %(outputs)s, updated_at = %(now)s
WHERE id = %(job)s AND status = 'running' AND attempts = %(attempt)s
"""
_STEP_DONE_SQL = f"WITH step AS ({_INSERT_STEP}) {_PROGRESS_JOB}"


def _fence(claim: Claim) -> dict[str, Any]:
    """Parameters naming this attempt: every write of it matches only while it owns the job."""
    return {"job": claim.job_id, "attempt": claim.attempt, "now": timezone.now()}


def _step_done(claim: Claim, result: StepRecord, outputs: list[Any]) -> bool:
    """Record a finished step and move the job's resume point past it. False if cancelled."""
    params = {
        **result.params(claim),
        **_fence(claim),
        "next_step": result.index + 1,
        "outputs": json.dumps(outputs),
    }
    with prepared_cursor() as cursor:
        cursor.execute(_STEP_DONE_SQL, params, prepare=True)
        return cursor.rowcount == 1


_SUCCEED_JOB = """
UPDATE jobs_job
SET status = 'succeeded', result = %(result)s, next_step = %(next_step)s,
    step_outputs = %(outputs)s, last_error = NULL, finished_at = %(now)s, updated_at = %(now)s,
    version = version + 1
WHERE id = %(job)s AND status = 'running' AND attempts = %(attempt)s
RETURNING id
"""

_FINISH_SUCCEEDED = """
UPDATE executions_execution SET status = 'succeeded', finished_at = %(now)s
WHERE id = %(execution)s AND status = 'running' AND EXISTS (SELECT FROM job)
"""

# Last step, job and attempt in one statement: the hot path's second and final round trip.
_SUCCEED_SQL = f"WITH step AS ({_INSERT_STEP}), job AS ({_SUCCEED_JOB}) {_FINISH_SUCCEEDED}"
_SUCCEED_NO_STEP_SQL = f"WITH job AS ({_SUCCEED_JOB}) {_FINISH_SUCCEEDED}"


def _attempt_succeeded(claim: Claim, result: StepRecord | None, outputs: list[Any]) -> RunOutcome:
    """RUNNING -> SUCCEEDED with the last step's output as the job's result, in one statement."""
    params = {
        **_fence(claim),
        "execution": claim.execution_id,
        "result": json.dumps(outputs[-1] if outputs else None),
        "next_step": len(claim.steps),
        "outputs": json.dumps(outputs),
    }
    if result is not None:
        params |= result.params(claim)
    with prepared_cursor() as cursor:
        cursor.execute(
            _SUCCEED_SQL if result is not None else _SUCCEED_NO_STEP_SQL, params, prepare=True
        )
        if cursor.rowcount == 1:
            return RunOutcome(status=Execution.Status.SUCCEEDED)
    return _attempt_cancelled(claim)


_RETRY_SQL = """
UPDATE jobs_job
SET status = 'retrying', next_attempt_at = %s, last_error = %s, updated_at = now(),
    version = version + 1
WHERE id = %s AND status = 'running' AND attempts = %s
"""

_FAIL_SQL = """
UPDATE jobs_job
SET status = 'failed', last_error = %s, finished_at = now(), updated_at = now(),
    version = version + 1
WHERE id = %s AND status = 'running' AND attempts = %s
"""


def _attempt_failed(claim: Claim, result: StepRecord, error: dict[str, Any]) -> RunOutcome:
    """RUNNING -> RETRYING (attempts left, transient) or FAILED (+ dead letter), in one transaction.

    A retry resumes at the failed step: the job's resume point stays where it is.
    """
    delay = next_delay(
        policy=claim.policy,
        attempt=claim.attempt - claim.retry_base,
        permanent=error["permanent"],
    )
    last_error = json.dumps({**error, "attempt": claim.attempt})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_INSERT_STEP, result.params(claim))
        if delay is not None:
            retry_at = timezone.now() + timedelta(seconds=delay)
            cursor.execute(_RETRY_SQL, [retry_at, last_error, claim.job_id, claim.attempt])
            if cursor.rowcount == 1:
                _finish_execution(claim, Execution.Status.FAILED, error, retry_at=retry_at)
                return RunOutcome(
                    status=Execution.Status.FAILED, retry_in=delay, next_attempt=claim.attempt + 1
                )
        else:
            cursor.execute(_FAIL_SQL, [last_error, claim.job_id, claim.attempt])
            if cursor.rowcount == 1:
                _finish_execution(claim, Execution.Status.FAILED, error)
                dead_letter_record(
                    job_id=claim.job_id,
                    reason=_dead_letter_reason(error),
                    error=error,
                    attempts=claim.attempt,
                    worker=claim.worker,
                )
                return RunOutcome(status=Execution.Status.FAILED)
    return _attempt_cancelled(claim)


def _dead_letter_reason(error: dict[str, Any]) -> str:
    if error["permanent"]:
        return DeadLetter.Reason.PERMANENT
    if error["code"] == "STEP.TIMEOUT":
        return DeadLetter.Reason.TIMEOUT
    return DeadLetter.Reason.EXHAUSTED


def _attempt_cancelled(claim: Claim) -> RunOutcome:
    """The job left RUNNING under this attempt (it was cancelled): close the attempt as such."""
    logger.info(
        "job %s attempt %d stopped: the job was cancelled or the attempt was reaped",
        claim.job_id,
        claim.attempt,
    )
    _finish_execution(claim, Execution.Status.CANCELLED)
    return RunOutcome(status=Execution.Status.CANCELLED)


def _finish_execution(
    claim: Claim,
    status: str,
    error: dict[str, Any] | None = None,
    *,
    retry_at: datetime | None = None,
) -> None:
    Execution.objects.filter(id=claim.execution_id, status=Execution.Status.RUNNING).update(
        status=status,
        finished_at=timezone.now(),
        error=error,
        will_retry=retry_at is not None,
        retry_at=retry_at,
    )


_STALE_SQL = """
SELECT e.id, e.job_id, e.attempt, e.worker, e.heartbeat_at,
       j.max_retries, j.retry_backoff, j.retry_backoff_max, j.retry_jitter,
       j.queue, j.priority, j.timeout, j.retry_base
FROM executions_execution AS e
JOIN jobs_job AS j ON j.id = e.job_id
WHERE e.status = 'running' AND e.heartbeat_at < %(cutoff)s {queues}
ORDER BY e.heartbeat_at
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED  -- several reapers (dispatchers) never reap one attempt twice
"""


def execution_reap_lost(
    *, lost_after: float, limit: int = 100, queues: Sequence[str] | None = None
) -> int:
    """RUNNING attempts silent for ``lost_after`` seconds -> LOST; their jobs -> RETRYING or FAILED.

    A lost attempt counts against the retry budget like a failed one; a job out of attempts ends
    FAILED with a dead letter. The next attempt's message is published after the commit; if that
    publish is lost too, the dispatcher publishes it again once it is overdue.
    """
    now = timezone.now()
    retries: list[ReleasedJob] = []
    with transaction.atomic(), connection.cursor() as cursor:
        queue_filter = "AND j.queue = ANY(%(queues)s)" if queues else ""
        cursor.execute(
            _STALE_SQL.format(queues=queue_filter),
            {
                "cutoff": now - timedelta(seconds=lost_after),
                "limit": limit,
                "queues": list(queues or []),
            },
        )
        stale = cursor.fetchall()
        for row in stale:
            retry = _reap(now, *row)
            if retry is not None:
                retries.append(retry)
    if retries:
        publish_attempts(retries)
    return len(stale)


def _reap(
    now: datetime,
    execution_id: int,
    job_id: UUID,
    attempt: int,
    worker: str,
    heartbeat_at: datetime,
    max_retries: int,
    backoff: float,
    backoff_max: float,
    jitter: bool,
    queue: str,
    priority: int,
    timeout: int,
    retry_base: int,
) -> ReleasedJob | None:
    silent = (now - heartbeat_at).total_seconds()
    error = {
        "type": "AttemptLost",
        "code": "EXECUTION.LOST",
        "message": f"no heartbeat from worker {worker or '?'} for {silent:.0f}s",
        "permanent": False,
        "attempt": attempt,
    }
    logger.warning("job %s attempt %d lost: %s", job_id, attempt, error["message"])
    policy = RetryPolicy(
        max_retries=max_retries, backoff=backoff, backoff_max=backoff_max, jitter=jitter
    )
    delay = next_delay(policy=policy, attempt=attempt - retry_base, permanent=False)
    retry_at = now + timedelta(seconds=delay) if delay is not None else None
    Execution.objects.filter(id=execution_id, status=Execution.Status.RUNNING).update(
        status=Execution.Status.LOST,
        finished_at=now,
        error=error,
        will_retry=retry_at is not None,
        retry_at=retry_at,
    )
    with connection.cursor() as cursor:
        if retry_at is not None:
            cursor.execute(_RETRY_SQL, [retry_at, json.dumps(error), job_id, attempt])
            if cursor.rowcount == 1:
                return ReleasedJob(
                    id=job_id,
                    queue=queue,
                    priority=priority,
                    attempt=attempt + 1,
                    timeout=timeout,
                    countdown=delay,
                )
        else:
            cursor.execute(_FAIL_SQL, [json.dumps(error), job_id, attempt])
            if cursor.rowcount == 1:
                dead_letter_record(
                    job_id=job_id,
                    reason=DeadLetter.Reason.LOST,
                    error=error,
                    attempts=attempt,
                    worker=worker,
                )
    return None
