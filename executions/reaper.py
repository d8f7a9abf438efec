"""The reaper: attempts whose heartbeat stopped are LOST, and their jobs go on the retry path.

It also ends a RUNNING job that has no running attempt at all, whatever caused it (an Execution
row deleted by hand, a restore, a bug): after the same lost-after window it goes on the retry
path, or fails with a dead letter, as if its attempt had been lost.

It runs in the dispatcher process (``run_dispatcher`` composes it as a chore), since ``jobs``
does not import ``executions``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from deadletter.models import DeadLetter
from deadletter.services import dead_letter_record
from executions.models import Execution
from executions.services.outcomes import finish_execution, job_to_failed, job_to_retrying
from jobplatform import metrics
from jobs.lifecycle import sql
from jobs.models import Job
from jobs.retry import RetryPolicy, next_delay
from jobs.steps import AttemptError

logger = logging.getLogger("jobplatform.executions")


@dataclass(frozen=True)
class SilentAttempt:
    """A RUNNING attempt whose heartbeat is older than the cutoff, with what its job needs.

    For a RUNNING job with no running attempt, ``execution_id`` is None and ``heartbeat_at`` is
    the job's last change (its claim)."""

    execution_id: int | None
    job_id: UUID
    attempt: int
    worker: str
    heartbeat_at: datetime
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    retry_jitter: bool
    retry_base: int
    queue: str

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_retries=self.max_retries,
            backoff=self.retry_backoff,
            backoff_max=self.retry_backoff_max,
            jitter=self.retry_jitter,
        )


_SILENT_SQL = f"""
SELECT e.id, e.job_id, e.attempt, e.worker, e.heartbeat_at,
       j.max_retries, j.retry_backoff, j.retry_backoff_max, j.retry_jitter, j.retry_base,
       j.queue
FROM executions_execution AS e
JOIN jobs_job AS j ON j.id = e.job_id
WHERE e.status = {sql(Execution.Status.RUNNING)} AND e.heartbeat_at < %(cutoff)s {{queues}}
ORDER BY e.heartbeat_at
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED  -- several reapers (dispatchers) never reap one attempt twice
"""

# A RUNNING job whose claim is older than the cutoff and which has no running attempt. No window
# of a live attempt matches: the claim inserts the running Execution in the statement that makes
# the job RUNNING, and every end of an attempt moves the job on in the transaction (or statement)
# that closes its Execution. The job's row lock (SKIP LOCKED) keeps two reapers, or a worker
# ending the attempt right now, off it; the UPDATEs below are fenced by the attempt besides.
_ORPHANS_SQL = f"""
SELECT NULL, j.id, j.attempts, '', j.updated_at,
       j.max_retries, j.retry_backoff, j.retry_backoff_max, j.retry_jitter, j.retry_base,
       j.queue
FROM jobs_job AS j
WHERE j.status = {sql(Job.Status.RUNNING)} AND j.updated_at < %(cutoff)s {{queues}}
  AND NOT EXISTS (
    SELECT FROM executions_execution AS e
    WHERE e.job_id = j.id AND e.status = {sql(Execution.Status.RUNNING)}
  )
ORDER BY j.updated_at
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED
"""


def execution_reap_lost(
    *, lost_after: float, limit: int = 100, queues: Sequence[str] | None = None
) -> int:
    """RUNNING attempts silent for ``lost_after`` seconds -> LOST; their jobs -> RETRYING or FAILED.

    A lost attempt counts against the retry budget like a failed one; a job out of attempts ends
    FAILED with a dead letter. A retrying job's next attempt is released by the dispatcher once
    its backoff is over, within the job's limits, as any retry is.
    """
    now = timezone.now()
    params: dict[str, datetime | int | list[str]] = {
        "cutoff": now - timedelta(seconds=lost_after),
        "limit": limit,
        "queues": list(queues or []),
    }
    queue_filter = "AND j.queue = ANY(%(queues)s)" if queues else ""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SILENT_SQL.format(queues=queue_filter), params)
        silent = [SilentAttempt(*row) for row in cursor.fetchall()]
        cursor.execute(_ORPHANS_SQL.format(queues=queue_filter), params)
        silent += [SilentAttempt(*row) for row in cursor.fetchall()]
        for lost in silent:
            _reap(cursor, lost, now=now)
    for lost in silent:
        metrics.ATTEMPTS_FINISHED.labels(lost.queue, "lost").inc()
    return len(silent)


def _reap(cursor: CursorWrapper, lost: SilentAttempt, *, now: datetime) -> None:
    """Close one silent attempt as LOST; put its job on the retry path, or fail it."""
    silent_for = (now - lost.heartbeat_at).total_seconds()
    if lost.execution_id is None:
        error = AttemptError.orphaned(silent=silent_for, attempt=lost.attempt)
    else:
        error = AttemptError.lost(worker=lost.worker, silent=silent_for, attempt=lost.attempt)
    logger.warning("job %s attempt %d lost: %s", lost.job_id, lost.attempt, error.message)
    delay = next_delay(policy=lost.policy, attempt=lost.attempt - lost.retry_base, permanent=False)
    retry_at = now + timedelta(seconds=delay) if delay is not None else None
    if lost.execution_id is not None:
        finish_execution(
            lost.execution_id, Execution.Status.LOST, error, retry_at=retry_at, now=now
        )
    if retry_at is not None:
        job_to_retrying(
            cursor, job_id=lost.job_id, attempt=lost.attempt, retry_at=retry_at, error=error
        )
    elif job_to_failed(cursor, job_id=lost.job_id, attempt=lost.attempt, error=error):
        dead_letter_record(
            job_id=lost.job_id,
            reason=DeadLetter.Reason.LOST,
            error=error,
            attempts=lost.attempt,
            worker=lost.worker,
        )
