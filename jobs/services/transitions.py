"""Transitions asked for by a client or an operator: cancel, reschedule, retry of FAILED jobs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.errors import Conflict, InvalidInput, NotFound
from jobplatform.models import AuditEvent
from jobs import lifecycle
from jobs.callbacks.services import Event, callbacks_publish
from jobs.lifecycle import sql, sql_in
from jobs.models import Job
from jobs.services.common import notify_dispatchers

AUDIT_SUBJECT = "job "


def job_cancel(*, job_id: UUID, actor: User | None, note: str = "") -> bool:
    """PENDING|QUEUED|RETRYING|RUNNING -> CANCELLED, with a ``job.cancelled`` row in the audit
    trail (``AuditEvent``, subject ``job <id>``) by ``actor`` (None: the platform) in the same
    statement.

    True if this call cancelled the job, False if it was already cancelled (idempotent: no second
    audit row); raises Conflict JOBS.NOT_CANCELLABLE if it had finished otherwise, NotFound if
    there is no such job. A queued message that arrives later finds nothing to claim. A running
    attempt learns it from its next heartbeat (long built-in steps stop at once) or at its next
    step boundary at the latest, and ends CANCELLED.
    """
    if jobs_cancel(job_ids=[job_id], actor=actor, note=note):
        return True
    status = _status(job_id)
    if status == lifecycle.CANCEL.target:
        return False
    raise Conflict(
        "JOBS.NOT_CANCELLABLE", f"the job has already finished ({status})", {"status": status}
    )


# The transition and its audit rows in one statement: one commit, nothing to roll back by hand.
_CANCEL_SQL = f"""
WITH cancelled AS (
    UPDATE jobs_job
    SET status = {sql(lifecycle.CANCEL.target)}, finished_at = now(), updated_at = now(),
        next_attempt_at = NULL, hold = '', version = version + 1
    WHERE id = ANY(%(ids)s) AND status IN {sql_in(lifecycle.CANCEL.sources)}
    RETURNING id, callback_url <> '' AS has_url
), audited AS (
    INSERT INTO jobplatform_auditevent (created_at, action, actor_id, actor_name, subject, details)
    SELECT now(), %(action)s, %(actor)s, %(actor_name)s, %(subject)s || id::text,
        jsonb_build_object('note', %(note)s::text)
    FROM cancelled
)
SELECT id, has_url FROM cancelled
"""


def jobs_cancel(*, job_ids: list[UUID], actor: User | None, note: str = "") -> list[UUID]:
    """PENDING|QUEUED|RETRYING|RUNNING -> CANCELLED for each of ``job_ids`` that has not finished,
    each with its audit row; returns those it cancelled, in one statement. Finished jobs are left
    as they are. The completion callbacks of those it cancelled are published after the commit."""
    if not job_ids:
        return []
    params = {
        "ids": list(job_ids),
        "action": AuditEvent.Action.JOB_CANCELLED,
        "actor": actor.pk if actor is not None else None,
        "actor_name": actor.get_username() if actor is not None else "",
        "note": note,
        "subject": AUDIT_SUBJECT,
    }
    with transaction.atomic(), connection.cursor() as cursor:  # the callbacks' outbox joins it
        cursor.execute(_CANCEL_SQL, params)
        rows = cursor.fetchall()
        for job_id, has_url in rows:
            callbacks_publish(job_id=job_id, event=Event.CANCELLED, has_url=has_url)
    return [job_id for job_id, _ in rows]


def job_audit_subject(job_id: UUID) -> str:
    """The ``AuditEvent.subject`` of the actions taken on a job."""
    return f"{AUDIT_SUBJECT}{job_id}"


def _status(job_id: UUID) -> str:
    status = Job.objects.filter(id=job_id).values_list("status", flat=True).first()
    if status is None:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}")
    return status


def job_reschedule(*, job_id: UUID, run_at: datetime) -> None:
    """PENDING -> PENDING due at ``run_at``; Conflict JOBS.NOT_PENDING once it was released.

    The dispatchers are woken at commit: one sleeping until the old run_at re-reads the earliest
    due time. A dispatcher releasing the job at the same moment holds its row lock; this UPDATE
    waits for it, then finds the job QUEUED and changes nothing.
    """
    if timezone.is_naive(run_at):
        raise InvalidInput(
            "JOBS.NAIVE_RUN_AT", "run_at needs a UTC offset, e.g. 2026-01-01T09:00:00+01:00 or ...Z"
        )
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status__in=lifecycle.RESCHEDULE.sources).update(
            run_at=run_at, updated_at=Now(), version=F("version") + 1
        )
        if updated:
            notify_dispatchers()
    if not updated:
        status = _status(job_id)
        raise Conflict(
            "JOBS.NOT_PENDING",
            f"run_at can change only while the job is pending; it is {status}",
            {"status": status},
        )


def _retry_sql(transition: lifecycle.Transition) -> str:
    return f"""
UPDATE jobs_job
SET status = {sql(transition.target)}, run_at = %(now)s, finished_at = NULL,
    next_attempt_at = NULL, queued_at = NULL, updated_at = %(now)s, version = version + 1,
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
WHERE id = ANY(%(ids)s) AND status IN {sql_in(transition.sources)}
  AND (%(from_step)s::integer IS NULL OR next_step >= %(from_step)s)
RETURNING id
"""


_RETRY_SQL = {t: _retry_sql(t) for t in (lifecycle.MANUAL_RETRY, lifecycle.JOB_RETRY)}


def job_retry(
    *,
    job_ids: list[UUID],
    max_retries: int | None = None,
    input: Any = None,
    from_step: int | None = None,
    transition: lifecycle.Transition = lifecycle.MANUAL_RETRY,
) -> list[UUID]:
    """FAILED -> PENDING (due now) for each of ``job_ids``; returns those it moved.
    ``transition=lifecycle.JOB_RETRY`` (a job's own retry action) moves CANCELLED jobs too.

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
    params: dict[str, datetime | list[UUID] | int | str | None] = {
        "now": timezone.now(),
        "ids": list(job_ids),
        "max_retries": max_retries,
        "input": new_input,
        "from_step": from_step,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RETRY_SQL[transition], params)
        retried = [row[0] for row in cursor.fetchall()]
        if retried:
            notify_dispatchers()
    return retried
