"""Retention of finished work: old finished jobs are deleted with their attempts, step results,
and closed dead letters, in small batches, by a dispatcher chore.

Batches rather than partitions (docs/operations.md#retention-of-finished-jobs): jobs are keyed
by UUID and referenced by attempts, dead letters and schedule firings; a job's life can span any
window (a dead-letter retry months later), and the unique constraints (idempotency key, schedule
tick) would have to include the partition key. Deleting rows that nothing else touches any more
(finished, old) takes row locks on those rows only, so a batch never waits for, or blocks, the
hot path.

It lives in ``executions``, the top of the import chain, because it deletes from every app's
tables in one statement; ``run_dispatcher`` composes it as a chore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from deadletter.models import DeadLetter
from jobs import lifecycle
from jobs.lifecycle import sql, sql_in

logger = logging.getLogger("jobplatform.retention")

NEVER = datetime.min.replace(tzinfo=UTC)  # no cutoff: kept forever


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished jobs are kept: days by queue, else ``days``. 0 keeps them forever."""

    days: float
    by_queue: Mapping[str, float] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.days > 0 or any(d > 0 for d in self.by_queue.values())

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        return cls(
            days=settings.JOBPLATFORM_JOB_RETENTION_DAYS,
            by_queue=settings.JOBPLATFORM_JOB_RETENTION_BY_QUEUE,
        )

    def cutoff(self, days: float, now: datetime) -> datetime:
        return now - timedelta(days=days) if days > 0 else NEVER


# One statement per batch: pick the batch, delete what hangs off each job, then the jobs. The
# foreign keys Django creates are DEFERRABLE INITIALLY DEFERRED, so they are checked at commit,
# when every row of the batch is gone. Data-modifying CTEs run to completion whether read or not.
_PURGE_SQL = f"""
WITH cutoff(queue, before) AS (
    SELECT * FROM unnest(%(queues)s::text[], %(befores)s::timestamptz[])
), victims AS (
    SELECT j.id FROM jobs_job AS j
    LEFT JOIN cutoff AS c ON c.queue = j.queue
    -- The latest cutoff of all bounds the walk of job_created: a job finishes after it is made.
    WHERE j.created_at < %(latest)s
      AND j.status IN {sql_in(lifecycle.TERMINAL)}
      AND j.finished_at < COALESCE(c.before, %(default)s)
      -- A FAILED job waiting for an operator keeps its dead letter, and so its job.
      AND NOT EXISTS (
        SELECT FROM deadletter_deadletter AS d
        WHERE d.job_id = j.id AND d.state = {sql(DeadLetter.State.OPEN)}
      )
      -- A schedule's last run is kept: its page and its overlap policy read it.
      AND NOT (j.schedule_id IS NOT NULL AND NOT EXISTS (
        SELECT FROM jobs_job AS newer
        WHERE newer.schedule_id = j.schedule_id AND newer.created_at > j.created_at
      ))
    ORDER BY j.created_at
    LIMIT %(batch)s
    -- Another dispatcher's purge takes the next rows instead of waiting for these.
    FOR UPDATE OF j SKIP LOCKED
), attempts AS (
    SELECT e.id FROM executions_execution AS e WHERE e.job_id IN (SELECT id FROM victims)
), gone_steps AS (
    DELETE FROM executions_stepresult WHERE execution_id IN (SELECT id FROM attempts)
), gone_attempts AS (
    DELETE FROM executions_execution WHERE id IN (SELECT id FROM attempts)
), dead AS (
    SELECT d.id FROM deadletter_deadletter AS d WHERE d.job_id IN (SELECT id FROM victims)
), gone_dead_actions AS (
    DELETE FROM deadletter_deadletteraction WHERE dead_letter_id IN (SELECT id FROM dead)
), gone_dead AS (
    DELETE FROM deadletter_deadletter WHERE id IN (SELECT id FROM dead)
), gone_callbacks AS (
    DELETE FROM jobs_callbackdelivery WHERE job_id IN (SELECT id FROM victims)
), firings AS (
    UPDATE jobs_schedulefiring SET job_id = NULL WHERE job_id IN (SELECT id FROM victims)
)
DELETE FROM jobs_job WHERE id IN (SELECT id FROM victims)
"""


def job_purge_finished(
    *,
    policy: RetentionPolicy,
    batch_size: int = 500,
    budget: float | None = None,
    now: datetime | None = None,
    queues: Sequence[str] | None = None,
) -> int:
    """Delete finished jobs older than ``policy`` (by their ``finished_at``), with everything
    recorded about them; return how many jobs.

    Never a job with an open dead letter, nor the latest job of a schedule. Each batch of
    ``batch_size`` jobs is its own transaction of one statement. Stops when a batch comes back
    short, or once ``budget`` seconds are spent (the dispatcher's chore: releases wait meanwhile),
    leaving the rest to the next run. ``queues``: only those (a dispatcher's ``--queues``).
    """
    if not policy.enabled:
        return 0
    now = now or timezone.now()
    by_queue = dict(policy.by_queue)
    default = policy.cutoff(policy.days, now)
    if queues:  # a queue this dispatcher does not serve is left to the one that does
        by_queue = {q: by_queue.get(q, policy.days) for q in queues}
        default = NEVER
    befores = {q: policy.cutoff(days, now) for q, days in by_queue.items()}
    latest = max([default, *befores.values()])
    if latest == NEVER:
        return 0
    params: dict[str, list[str] | list[datetime] | datetime | int] = {
        "queues": list(befores),
        "befores": list(befores.values()),
        "default": default,
        "latest": latest,
        "batch": batch_size,
    }
    started = time.monotonic()
    purged = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_PURGE_SQL, params)
            deleted: int = cursor.rowcount
        purged += deleted
        if deleted < batch_size or (budget is not None and time.monotonic() - started > budget):
            break
    if purged:
        logger.info(
            "retention: deleted %d finished jobs in %.2fs", purged, time.monotonic() - started
        )
    return purged
