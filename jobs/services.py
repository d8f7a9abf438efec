"""Writes on jobs: submit, cancel, release. Each transition is one conditional UPDATE."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.errors import InvalidInput
from jobs import lifecycle
from jobs.models import Job
from jobs.steps import get_step, registered_steps

logger = logging.getLogger(__name__)

# Submissions NOTIFY this channel in their transaction; PostgreSQL delivers it at commit, so the
# dispatcher never wakes for a row it cannot see yet.
DISPATCH_CHANNEL = "jobplatform_dispatch"
RUN_JOB_TASK = "executions.run_job"


@dataclass(frozen=True)
class JobSpec:
    """A submission as the API parsed it; values are checked by :func:`job_validate`."""

    name: str
    steps: list[Any]
    input: Any = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    max_retries: int = 3
    retry_backoff: float = 2.0
    retry_backoff_max: float = 300.0
    retry_jitter: bool = True
    timeout: int = 3600
    run_at: datetime | None = None


@dataclass(frozen=True)
class ReleasedJob:
    id: UUID
    queue: str
    priority: int
    attempt: int  # the attempt number the published message will start


def job_validate(*, spec: JobSpec) -> None:
    """Raise InvalidInput with a JOBS.* code for the first rule ``spec`` breaks."""
    _validate_steps(spec.steps)
    input_bytes = len(json.dumps(spec.input, separators=(",", ":")).encode())
    if input_bytes > settings.JOBPLATFORM_MAX_INPUT_BYTES:
        raise InvalidInput(
            "JOBS.INPUT_TOO_LARGE",
            f"input is {input_bytes} bytes; the limit is {settings.JOBPLATFORM_MAX_INPUT_BYTES}",
            {"size": input_bytes, "limit": settings.JOBPLATFORM_MAX_INPUT_BYTES},
        )
    if spec.queue not in settings.JOBPLATFORM_QUEUES:
        raise InvalidInput(
            "JOBS.UNKNOWN_QUEUE",
            f"no worker serves queue {spec.queue!r}",
            {"queue": spec.queue, "queues": settings.JOBPLATFORM_QUEUES},
        )
    if not 0 <= spec.priority <= 9:
        raise InvalidInput("JOBS.INVALID_PRIORITY", "priority must be between 0 and 9")
    _validate_retry_policy(spec)
    if not 1 <= spec.timeout <= settings.JOBPLATFORM_MAX_JOB_TIMEOUT:
        raise InvalidInput(
            "JOBS.INVALID_TIMEOUT",
            f"timeout must be between 1 and {settings.JOBPLATFORM_MAX_JOB_TIMEOUT} seconds",
        )
    if spec.run_at is not None and timezone.is_naive(spec.run_at):
        raise InvalidInput(
            "JOBS.NAIVE_RUN_AT",
            "run_at needs a UTC offset, e.g. 2026-01-01T09:00:00+01:00 or ...Z",
        )


def _validate_steps(steps: list[Any]) -> None:
    if not steps:
        raise InvalidInput("JOBS.NO_STEPS", "a job needs at least one step")
    if len(steps) > settings.JOBPLATFORM_MAX_STEPS:
        raise InvalidInput(
            "JOBS.TOO_MANY_STEPS",
            f"{len(steps)} steps; the limit is {settings.JOBPLATFORM_MAX_STEPS}",
            {"count": len(steps), "limit": settings.JOBPLATFORM_MAX_STEPS},
        )
    for index, spec in enumerate(steps):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} must be an object with a string 'type' and optional 'params'",
                {"index": index},
            )
        unknown_keys = set(spec) - {"type", "params"}
        if unknown_keys:
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} has unknown keys {sorted(unknown_keys)}",
                {"index": index, "keys": sorted(unknown_keys)},
            )
        step_type = get_step(spec["type"])
        if step_type is None:
            raise InvalidInput(
                "JOBS.UNKNOWN_STEP_TYPE",
                f"step {index} has unknown type {spec['type']!r}",
                {
                    "index": index,
                    "type": spec["type"],
                    "known": [s.name for s in registered_steps()],
                },
            )
        errors = step_type.validation_errors(spec.get("params", {}))
        if errors:
            raise InvalidInput(
                "JOBS.INVALID_STEP_PARAMS",
                f"step {index} ({spec['type']}): {errors[0]['message']}",
                {"index": index, "type": spec["type"], "errors": errors},
            )


def _validate_retry_policy(spec: JobSpec) -> None:
    limit = settings.JOBPLATFORM_MAX_RETRIES
    if not 0 <= spec.max_retries <= limit:
        raise InvalidInput("JOBS.INVALID_RETRY_POLICY", f"max_retries must be 0 to {limit}")
    backoff_limit = settings.JOBPLATFORM_MAX_RETRY_BACKOFF
    if not 0 <= spec.retry_backoff <= backoff_limit:
        raise InvalidInput(
            "JOBS.INVALID_RETRY_POLICY", f"retry_backoff must be 0 to {backoff_limit} seconds"
        )
    if not spec.retry_backoff <= spec.retry_backoff_max <= backoff_limit:
        raise InvalidInput(
            "JOBS.INVALID_RETRY_POLICY",
            f"retry_backoff_max must be between retry_backoff and {backoff_limit} seconds",
        )


def job_submit(*, owner: AbstractBaseUser, spec: JobSpec) -> Job:
    """Store a new PENDING job and wake the dispatchers when the transaction commits.

    Nothing is published to the broker here: the dispatcher releases the job once it is due, so a
    rolled-back submission never reaches a worker.
    """
    job_validate(spec=spec)
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner,
            name=spec.name,
            steps=[{"type": s["type"], "params": s.get("params", {})} for s in spec.steps],
            input=spec.input,
            queue=spec.queue,
            priority=spec.priority,
            max_retries=spec.max_retries,
            retry_backoff=spec.retry_backoff,
            retry_backoff_max=spec.retry_backoff_max,
            retry_jitter=spec.retry_jitter,
            timeout=spec.timeout,
            run_at=spec.run_at or now,
            created_at=now,
            updated_at=now,
        )
        _notify_dispatchers()
    return job


def _notify_dispatchers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [DISPATCH_CHANNEL])


def job_cancel(*, job_id: UUID) -> bool:
    """PENDING|QUEUED|RETRYING|RUNNING -> CANCELLED. False if the job had already finished.

    A queued message that arrives later finds nothing to claim; a running attempt sees the
    cancellation at its next step boundary and stops there.
    """
    updated = Job.objects.filter(id=job_id, status__in=lifecycle.CANCELLABLE).update(
        status=Job.Status.CANCELLED,
        finished_at=Now(),
        updated_at=Now(),
        next_attempt_at=None,
        version=F("version") + 1,
    )
    return updated == 1


_RELEASE_SQL = """
WITH due AS (
    SELECT id FROM jobs_job
    -- Due by the application's clock, the one that wrote run_at (not the transaction's start).
    WHERE status = 'pending' AND run_at <= %s
    ORDER BY run_at
    LIMIT %s
    -- Two dispatchers never release one job twice: each skips the rows the other has locked,
    -- and the status re-check below sees the other's committed release.
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs_job AS j
SET status = 'queued', queued_at = now(), updated_at = now(), version = j.version + 1
FROM due
WHERE j.id = due.id AND j.status = 'pending'
RETURNING j.id, j.queue, j.priority, j.attempts
"""


def job_release_due(*, limit: int) -> list[ReleasedJob]:
    """PENDING (due) -> QUEUED for up to ``limit`` jobs, oldest run_at first.

    The caller publishes one run_job message per released job after this commits (and hands
    the jobs back with :func:`job_unrelease` if it cannot).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, [timezone.now(), limit])
        rows = cursor.fetchall()
    return [
        ReleasedJob(id=row[0], queue=row[1], priority=row[2], attempt=row[3] + 1) for row in rows
    ]


def job_unrelease(*, job_ids: list[UUID]) -> int:
    """QUEUED -> PENDING for jobs whose message could not be published, so none is stranded."""
    return Job.objects.filter(id__in=job_ids, status=Job.Status.QUEUED).update(
        status=Job.Status.PENDING, queued_at=None, updated_at=Now(), version=F("version") + 1
    )


def job_next_due_at() -> datetime | None:
    """The earliest run_at among PENDING jobs (the partial index answers it)."""
    return (
        Job.objects.filter(status=Job.Status.PENDING)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
    )
