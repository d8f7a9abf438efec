"""The reaper: attempts whose heartbeat stopped are LOST, and their jobs go on the retry path.

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
from jobs.retry import RetryPolicy, next_delay
from jobs.steps import AttemptError

logger = logging.getLogger("jobplatform.executions")


@dataclass(frozen=True)
class SilentAttempt:
    """A RUNNING attempt whose heartbeat is older than the cutoff, with what its job needs."""

    execution_id: int
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


def execution_reap_lost(
    *, lost_after: float, limit: int = 100, queues: Sequence[str] | None = None
) -> int:
    """RUNNING attempts silent for ``lost_after`` seconds -> LOST; their jobs -> RETRYING or FAILED.

    A lost attempt counts against the retry budget like a failed one; a job out of attempts ends
    FAILED with a dead letter. A retrying job's next attempt is released by the dispatcher once
    its backoff is over, within the job's limits, as any retry is.
    """
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        queue_filter = "AND j.queue = ANY(%(queues)s)" if queues else ""
        cursor.execute(
            _SILENT_SQL.format(queues=queue_filter),
            {
                "cutoff": now - timedelta(seconds=lost_after),
                "limit": limit,
                "queues": list(queues or []),
            },
        )
        silent = [SilentAttempt(*row) for row in cursor.fetchall()]
        for lost in silent:
            _reap(cursor, lost, now=now)
    for lost in silent:
        metrics.ATTEMPTS_FINISHED.labels(lost.queue, "lost").inc()
    return len(silent)


def _reap(cursor: CursorWrapper, lost: SilentAttempt, *, now: datetime) -> None:
    """Close one silent attempt as LOST; put its job on the retry path, or fail it."""
    silent_for = (now - lost.heartbeat_at).total_seconds()
    error = AttemptError.lost(worker=lost.worker, silent=silent_for, attempt=lost.attempt)
    logger.warning("job %s attempt %d lost: %s", lost.job_id, lost.attempt, error.message)
    delay = next_delay(policy=lost.policy, attempt=lost.attempt - lost.retry_base, permanent=False)
    retry_at = now + timedelta(seconds=delay) if delay is not None else None
    finish_execution(lost.execution_id, Execution.Status.LOST, error, retry_at=retry_at, now=now)
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
