"""Transitions asked for by a client or an operator: cancel, reschedule, retry of FAILED jobs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.errors import InvalidInput
from jobs import lifecycle
from jobs.models import Job
from jobs.services.common import notify_dispatchers


def job_cancel(*, job_id: UUID) -> bool:
    """PENDING|QUEUED|RETRYING|RUNNING -> CANCELLED. False if the job had already finished.

    A queued message that arrives later finds nothing to claim. A running attempt learns it from
    its next heartbeat (long built-in steps stop at once) or at its next step boundary at the
    latest, and ends CANCELLED.
    """
    updated = Job.objects.filter(id=job_id, status__in=lifecycle.CANCELLABLE).update(
        status=Job.Status.CANCELLED,
        finished_at=Now(),
        updated_at=Now(),
        next_attempt_at=None,
        version=F("version") + 1,
    )
    return updated == 1


def job_reschedule(*, job_id: UUID, run_at: datetime) -> bool:
    """PENDING -> PENDING due at ``run_at``. False if the job was already released (or finished).

    The dispatchers are woken at commit: one sleeping until the old run_at re-reads the earliest
    due time. A dispatcher releasing the job at the same moment holds its row lock; this UPDATE
    waits for it, then finds the job QUEUED and changes nothing.
    """
    if timezone.is_naive(run_at):
        raise InvalidInput(
            "JOBS.NAIVE_RUN_AT", "run_at needs a UTC offset, e.g. 2026-01-01T09:00:00+01:00 or ...Z"
        )
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status__in=lifecycle.RESCHEDULABLE).update(
            run_at=run_at, updated_at=Now(), version=F("version") + 1
        )
        if updated:
            notify_dispatchers()
    return updated == 1


_RETRY_FAILED_SQL = """
UPDATE jobs_job
SET status = 'pending', run_at = %(now)s, finished_at = NULL, next_attempt_at = NULL,
    queued_at = NULL, updated_at = %(now)s, version = version + 1,
    -- A fresh budget: the retry policy counts attempts from here, the numbering goes on.
    retry_base = attempts,
    max_retries = COALESCE(%(max_retries)s, max_retries),
    input = COALESCE(%(input)s::jsonb, input),
    next_step = COALESCE(%(from_step)s, next_step),
    -- Retrying from step k keeps the stored outputs of steps 0..k-1, which later steps read.
    step_outputs = CASE WHEN %(from_step)s::integer IS NULL THEN step_outputs ELSE (
        SELECT COALESCE(jsonb_agg(done.output ORDER BY done.n), '[]'::jsonb)
        FROM jsonb_array_elements(step_outputs) WITH ORDINALITY AS done(output, n)
        WHERE done.n <= %(from_step)s
    ) END
WHERE id = ANY(%(ids)s) AND status = 'failed'
  AND (%(from_step)s::integer IS NULL OR next_step >= %(from_step)s)
RETURNING id
"""


def job_retry(
    *,
    job_ids: list[UUID],
    max_retries: int | None = None,
    input: Any = None,
    from_step: int | None = None,
) -> list[UUID]:
    """FAILED -> PENDING (due now) for each of ``job_ids``; returns the ids that were FAILED.

    One set-based UPDATE however many jobs. The job keeps its history: ``attempts`` is not reset,
    so the next attempt continues the numbering, and ``retry_base`` gives it a fresh retry budget.
    It resumes at the step that failed, or at ``from_step`` (only for jobs that got that far: the
    earlier steps' stored outputs are reused). ``max_retries`` and ``input`` (None: keep) replace
    the job's own. The dispatchers are woken in the caller's transaction, so at its commit.
    """
    limit = settings.JOBPLATFORM_MAX_RETRIES
    if max_retries is not None and not 0 <= max_retries <= limit:
        raise InvalidInput("JOBS.INVALID_RETRY_POLICY", f"max_retries must be 0 to {limit}")
    if from_step is not None and from_step < 0:
        raise InvalidInput("JOBS.INVALID_FROM_STEP", "from_step must be 0 or more")
    new_input = None if input is None else json.dumps(input, separators=(",", ":"))
    if new_input is not None and len(new_input.encode()) > settings.JOBPLATFORM_MAX_INPUT_BYTES:
        raise InvalidInput(
            "JOBS.INPUT_TOO_LARGE",
            f"input is {len(new_input.encode())} bytes; "
            f"the limit is {settings.JOBPLATFORM_MAX_INPUT_BYTES}",
            {"size": len(new_input.encode()), "limit": settings.JOBPLATFORM_MAX_INPUT_BYTES},
        )
    if not job_ids:
        return []
    params = {
        "now": timezone.now(),
        "ids": list(job_ids),
        "max_retries": max_retries,
        "input": new_input,
        "from_step": from_step,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RETRY_FAILED_SQL, params)
        retried = [row[0] for row in cursor.fetchall()]
        if retried:
            notify_dispatchers()
    return retried
