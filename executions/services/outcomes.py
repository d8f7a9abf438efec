"""How an attempt ends: succeeded, failed (to retry, or for good with a dead letter), cancelled.

Every write is fenced by the attempt (``status = 'running' AND attempts = <this attempt>``): an
attempt whose job was cancelled, or taken over by a later attempt, finds nothing to update and
closes itself as cancelled instead of overwriting the newer state.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from deadletter.models import DeadLetter
from deadletter.services import dead_letter_record
from executions.models import Execution
from executions.services.claim import CLAIM_COLUMNS, Claim, ClaimRequest, claim_ctes
from executions.services.step_results import ATTEMPT_FENCE, INSERT_STEP, StepRecord, fence
from jobplatform.db import prepared_cursor
from jobs import lifecycle
from jobs.callbacks.services import Event, callbacks_publish, callbacks_wanted
from jobs.lifecycle import sql
from jobs.retry import next_delay
from jobs.services import DISPATCH_CHANNEL
from jobs.steps import AttemptError

logger = logging.getLogger("jobplatform.executions")


@dataclass(frozen=True)
class RunOutcome:
    """How the attempt ended, and, after a transient failure, when the next one is due (the
    dispatcher releases it then; the Celery task reports the retry to Celery)."""

    status: str  # "duplicate", or the attempt's Execution.Status
    retry_in: float | None = None
    next_attempt: int | None = None
    # In a batch, the success may claim the batch's next job in the same statement: then
    # ``then_tried`` and ``then_claim`` is that claim (None: nothing to claim).
    then_tried: bool = False
    then_claim: Claim | None = None


_SUCCEED_JOB = f"""
UPDATE jobs_job
SET status = {sql(lifecycle.SUCCEED.target)}, result = %(result)s, next_step = %(next_step)s,
    step_outputs = %(outputs)s, last_error = NULL, finished_at = %(now)s, updated_at = %(now)s,
    version = version + 1
WHERE id = %(job)s AND {ATTEMPT_FENCE}
RETURNING id
"""

_FINISH_SUCCEEDED = f"""
UPDATE executions_execution SET status = {sql(Execution.Status.SUCCEEDED)}, finished_at = %(now)s
WHERE id = %(execution)s AND status = {sql(Execution.Status.RUNNING)} AND EXISTS (SELECT FROM job)
"""

# Last step, job and attempt in one statement: the hot path's second and final round trip.
_SUCCEED_SQL = f"WITH step AS ({INSERT_STEP}), job AS ({_SUCCEED_JOB}) {_FINISH_SUCCEEDED}"
_SUCCEED_NO_STEP_SQL = f"WITH job AS ({_SUCCEED_JOB}) {_FINISH_SUCCEEDED}"
# In a batch, the same and the claim of the batch's next job: one round trip and one commit
# between two jobs instead of two. The two touch different rows (a job is once in a batch; were
# it twice, the claim would find it RUNNING in the statement's snapshot and match nothing).
_SUCCEED_THEN_CLAIM_SQL = f"""
WITH step AS ({INSERT_STEP}), job AS ({_SUCCEED_JOB}),
finished AS ({_FINISH_SUCCEEDED} RETURNING id), {claim_ctes("next_")}
SELECT (SELECT count(*) FROM finished), next.*
FROM (SELECT 1) AS one LEFT JOIN (SELECT {CLAIM_COLUMNS} FROM claimed, execution) AS next ON true
"""


def attempt_succeeded(
    claim: Claim,
    result: StepRecord | None,
    outputs: list[Any],
    *,
    then: ClaimRequest | None = None,
) -> RunOutcome:
    """RUNNING -> SUCCEEDED with the last step's output as the job's result, in one statement;
    with ``then`` (the next job of a batch), that job's claim in the same statement."""
    now = timezone.now()
    params = {
        **fence(claim),
        "execution": claim.execution_id,
        "result": json.dumps(outputs[-1] if outputs else None),
        "next_step": len(claim.steps),
        "outputs": json.dumps(outputs),
    }
    if result is not None:
        params |= result.params(claim)
    # One statement in autocommit, the hot path; a job that sends callbacks when it ends needs
    # a transaction, which their outbox rows join.
    ending = transaction.atomic() if callbacks_wanted(has_url=claim.callback) else nullcontext()
    if then is not None and result is not None:
        with ending:
            with prepared_cursor() as cursor:
                cursor.execute(
                    _SUCCEED_THEN_CLAIM_SQL, params | then.params(now, "next_"), prepare=True
                )
                finished, *row = cursor.fetchone() or (0,)
            if finished == 1:
                callbacks_publish(
                    job_id=claim.job_id, event=Event.SUCCEEDED, has_url=claim.callback
                )
        next_claim = None if row[0] is None else then.claim(row, now)
        if finished == 1:
            outcome = RunOutcome(status=Execution.Status.SUCCEEDED)
        else:
            outcome = attempt_cancelled(claim)
        return replace(outcome, then_tried=True, then_claim=next_claim)
    with ending:
        with prepared_cursor() as cursor:
            cursor.execute(
                _SUCCEED_SQL if result is not None else _SUCCEED_NO_STEP_SQL, params, prepare=True
            )
            succeeded = cursor.rowcount == 1
        if succeeded:
            callbacks_publish(job_id=claim.job_id, event=Event.SUCCEEDED, has_url=claim.callback)
    if succeeded:
        return RunOutcome(status=Execution.Status.SUCCEEDED)
    return attempt_cancelled(claim)


def attempt_failed(claim: Claim, result: StepRecord, error: AttemptError) -> RunOutcome:
    """RUNNING -> RETRYING (attempts left, transient) or FAILED (+ dead letter), in one transaction.

    A retry resumes at the failed step: the job's resume point stays where it is.
    """
    delay = next_delay(policy=claim.policy, attempt=claim.budget_attempt, permanent=error.permanent)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(INSERT_STEP, result.params(claim))
        if delay is not None:
            retry_at = timezone.now() + timedelta(seconds=delay)
            if job_to_retrying(
                cursor, job_id=claim.job_id, attempt=claim.attempt, retry_at=retry_at, error=error
            ):
                finish_execution(
                    claim.execution_id, Execution.Status.FAILED, error, retry_at=retry_at
                )
                return RunOutcome(
                    status=Execution.Status.FAILED, retry_in=delay, next_attempt=claim.attempt + 1
                )
        elif job_to_failed(cursor, job_id=claim.job_id, attempt=claim.attempt, error=error):
            finish_execution(claim.execution_id, Execution.Status.FAILED, error)
            dead_letter_record(
                job_id=claim.job_id,
                reason=dead_letter_reason(error),
                error=error,
                attempts=claim.attempt,
                worker=claim.worker,
            )
            return RunOutcome(status=Execution.Status.FAILED)
    return attempt_cancelled(claim)


def attempt_cancelled(claim: Claim) -> RunOutcome:
    """The job left RUNNING under this attempt (it was cancelled): close the attempt as such."""
    logger.info(
        "job %s attempt %d stopped: the job was cancelled or the attempt was reaped",
        claim.job_id,
        claim.attempt,
    )
    finish_execution(claim.execution_id, Execution.Status.CANCELLED)
    return RunOutcome(status=Execution.Status.CANCELLED)


def dead_letter_reason(error: AttemptError) -> str:
    if error.permanent:
        return DeadLetter.Reason.PERMANENT
    if error.code == "STEP.TIMEOUT":
        return DeadLetter.Reason.TIMEOUT
    if error.code == "EXECUTION.LOST":
        return DeadLetter.Reason.LOST
    return DeadLetter.Reason.EXHAUSTED


def finish_execution(
    execution_id: int,
    status: str,
    error: AttemptError | None = None,
    *,
    retry_at: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """RUNNING -> ``status`` for the attempt's Execution (a no-op if it was already closed)."""
    Execution.objects.filter(id=execution_id, status=Execution.Status.RUNNING).update(
        status=status,
        finished_at=now or timezone.now(),
        error=None if error is None else error.as_dict(),
        will_retry=retry_at is not None,
        retry_at=retry_at,
    )


# The dispatchers are woken when it commits: the next attempt is theirs to release when due,
# within the job's limits like any waiting job (nothing is published here).
_RETRY_SQL = f"""
WITH job AS (
    UPDATE jobs_job
    SET status = {sql(lifecycle.RETRY.target)}, next_attempt_at = %(retry_at)s,
        last_error = %(error)s, updated_at = now(), version = version + 1
    WHERE id = %(job)s AND {ATTEMPT_FENCE}
    RETURNING id
)
SELECT pg_notify(%(channel)s, '') FROM job
"""

_FAIL_SQL = f"""
UPDATE jobs_job
SET status = {sql(lifecycle.FAIL.target)}, last_error = %(error)s, finished_at = now(),
    updated_at = now(), version = version + 1
WHERE id = %(job)s AND {ATTEMPT_FENCE}
RETURNING callback_url <> ''
"""


def job_to_retrying(
    cursor: CursorWrapper, *, job_id: UUID, attempt: int, retry_at: datetime, error: AttemptError
) -> bool:
    """RUNNING (under ``attempt``) -> RETRYING, due at ``retry_at``. False if it moved on.

    The dispatchers learn of it at commit and release the next attempt once it is due.
    """
    last_error = json.dumps(error.for_attempt(attempt).as_dict())
    params: dict[str, Any] = {
        "retry_at": retry_at,
        "error": last_error,
        "job": job_id,
        "attempt": attempt,
        "channel": DISPATCH_CHANNEL,
    }
    cursor.execute(_RETRY_SQL, params)
    updated: int = cursor.rowcount
    return updated == 1


def job_to_failed(
    cursor: CursorWrapper, *, job_id: UUID, attempt: int, error: AttemptError
) -> bool:
    """RUNNING (under ``attempt``) -> FAILED. False if it moved on. The caller dead-letters it;
    the completion callbacks are published after the commit."""
    last_error = json.dumps(error.for_attempt(attempt).as_dict())
    cursor.execute(_FAIL_SQL, {"error": last_error, "job": job_id, "attempt": attempt})
    row = cursor.fetchone()
    if row is None:
        return False
    callbacks_publish(job_id=job_id, event=Event.FAILED, has_url=row[0])
    return True
