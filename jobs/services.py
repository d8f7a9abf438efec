"""Writes on jobs: submit, cancel, release. Each transition is one conditional UPDATE."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, JSONField
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.errors import Conflict, InvalidInput
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
    """A run_job message to publish."""

    id: UUID
    queue: str
    priority: int
    attempt: int  # the attempt number the published message will start
    timeout: int  # the job's per-attempt timeout: the message's hard time limit is set from it
    countdown: float | None = None  # seconds the broker holds the message (a retry's backoff)


def job_validate(*, spec: JobSpec, valid_steps: set[str] | None = None) -> None:
    """Raise InvalidInput with a JOBS.* code for the first rule ``spec`` breaks.

    ``valid_steps`` remembers pipelines already found valid (canonical JSON) across calls.
    """
    if valid_steps is None:
        _validate_steps(spec.steps)
    else:
        key = json.dumps(spec.steps, sort_keys=True, default=str)
        if key not in valid_steps:
            _validate_steps(spec.steps)
            valid_steps.add(key)
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
        unknown_keys = set(spec) - {"type", "params", "timeout"}
        if unknown_keys:
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} has unknown keys {sorted(unknown_keys)}",
                {"index": index, "keys": sorted(unknown_keys)},
            )
        step_timeout = spec.get("timeout")
        if step_timeout is not None and (
            isinstance(step_timeout, bool)
            or not isinstance(step_timeout, int | float)
            or not 0 < step_timeout <= settings.JOBPLATFORM_MAX_JOB_TIMEOUT
        ):
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} timeout must be a number of seconds above 0",
                {"index": index},
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


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an earlier submission with the same idempotency key is answered


def job_submit(
    *, owner: AbstractBaseUser, spec: JobSpec, idempotency_key: str | None = None
) -> Submission:
    """Store a new PENDING job and wake the dispatchers when the transaction commits.

    Nothing is published to the broker here: the dispatcher releases the job once it is due, so a
    rolled-back submission never reaches a worker. With an idempotency key, a repeat of the same
    body returns the original job (created=False) and a different body raises Conflict.
    """
    job_validate(spec=spec)
    fingerprint = _fingerprint(spec) if idempotency_key else ""
    for _ in range(3):  # a concurrent submission or an expiring key may need another look
        if idempotency_key:
            earlier = _earlier_submission(owner, idempotency_key, fingerprint)
            if earlier is not None:
                return Submission(job=earlier, created=False)
        try:
            with transaction.atomic():
                job = _new_job(owner, spec, idempotency_key, fingerprint)
                job.save(force_insert=True)
                _notify_dispatchers()
            return Submission(job=job, created=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            # Another request with this key committed first: answer with its job.
    raise Conflict("JOBS.IDEMPOTENCY_KEY_BUSY", "the idempotency key is in use; try again")


def job_submit_many(*, owner: AbstractBaseUser, specs: list[JobSpec]) -> list[UUID]:
    """Store many PENDING jobs in one transaction: one COPY, one NOTIFY.

    All or nothing: the first invalid spec rejects the batch, naming its index.
    """
    limit = settings.JOBPLATFORM_MAX_BULK_JOBS
    if not 1 <= len(specs) <= limit:
        raise InvalidInput(
            "JOBS.INVALID_BULK_SIZE", f"a bulk submission holds 1 to {limit} jobs", {"limit": limit}
        )
    valid_steps: set[str] = set()  # a batch usually repeats one pipeline: check each once
    for index, spec in enumerate(specs):
        try:
            job_validate(spec=spec, valid_steps=valid_steps)
        except InvalidInput as exc:
            raise InvalidInput(
                exc.code, f"job {index}: {exc.message}", {"job_index": index, **exc.details}
            ) from None
    rows = [_job_values(owner, spec, None, "") for spec in specs]
    with transaction.atomic():
        _copy_jobs(rows)
        _notify_dispatchers()
    return [row["id"] for row in rows]


_JOB_FIELDS = list(Job._meta.concrete_fields)
_JSON_FIELDS = {f.attname for f in _JOB_FIELDS if isinstance(f, JSONField)}


def _copy_jobs(rows: list[dict[str, Any]]) -> None:
    """COPY the rows in: bulk_create's per-object and per-field work cost more than the database
    did (measured in docs/performance.md). Columns left out of a row take the field's default."""
    columns = ", ".join(connection.ops.quote_name(f.column) for f in _JOB_FIELDS)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY jobs_job ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([_cell(f, row) for f in _JOB_FIELDS])


def _cell(field: Any, row: dict[str, Any]) -> Any:
    value = row[field.attname] if field.attname in row else field.get_default()
    if field.attname in _JSON_FIELDS and value is not None:
        return json.dumps(value)
    return value


def _new_job(
    owner: AbstractBaseUser, spec: JobSpec, idempotency_key: str | None, fingerprint: str
) -> Job:
    return Job(**_job_values(owner, spec, idempotency_key, fingerprint))


def _job_values(
    owner: AbstractBaseUser, spec: JobSpec, idempotency_key: str | None, fingerprint: str
) -> dict[str, Any]:
    """A new job's fields from a submission; the rest take the model's defaults."""
    now = timezone.now()
    return {
        "id": uuid.uuid4(),
        "owner_id": owner.pk,
        "name": spec.name,
        "steps": [
            {"type": s["type"], "params": s.get("params", {})} | _step_extras(s) for s in spec.steps
        ],
        "input": spec.input,
        "queue": spec.queue,
        "priority": spec.priority,
        "max_retries": spec.max_retries,
        "retry_backoff": spec.retry_backoff,
        "retry_backoff_max": spec.retry_backoff_max,
        "retry_jitter": spec.retry_jitter,
        "timeout": spec.timeout,
        "run_at": spec.run_at or now,
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
        "created_at": now,
        "updated_at": now,
    }


def _step_extras(step: dict[str, Any]) -> dict[str, Any]:
    return {"timeout": step["timeout"]} if step.get("timeout") is not None else {}


def _fingerprint(spec: JobSpec) -> str:
    body = asdict(spec)
    body["run_at"] = spec.run_at.isoformat() if spec.run_at else None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _earlier_submission(owner: AbstractBaseUser, key: str, fingerprint: str) -> Job | None:
    """The live job submitted with ``key``; an expired key is released for reuse."""
    earlier = Job.objects.filter(owner=owner, idempotency_key=key).first()
    if earlier is None:
        return None
    ttl = timedelta(hours=settings.JOBPLATFORM_IDEMPOTENCY_TTL_HOURS)
    if earlier.created_at < timezone.now() - ttl:
        Job.objects.filter(id=earlier.id, idempotency_key=key).update(idempotency_key=None)
        return None
    if earlier.request_fingerprint != fingerprint:
        raise Conflict(
            "JOBS.IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was used for a different request",
            {"job_id": str(earlier.id)},
        )
    return earlier


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
    WHERE status = 'pending' AND run_at <= %(now)s {queues}
    ORDER BY run_at
    LIMIT %(limit)s
    -- Two dispatchers never release one job twice: each skips the rows the other has locked,
    -- and the status re-check below sees the other's committed release.
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs_job AS j
SET status = 'queued', queued_at = now(), updated_at = now(), version = j.version + 1
FROM due
WHERE j.id = due.id AND j.status = 'pending'
RETURNING j.id, j.queue, j.priority, j.attempts, j.timeout
"""


def _queue_filter(queues: Sequence[str] | None, column: str = "queue") -> str:
    """SQL narrowing a scan to some queues: a dispatcher may serve only its own."""
    return f"AND {column} = ANY(%(queues)s)" if queues else ""


def job_release_due(*, limit: int, queues: Sequence[str] | None = None) -> list[ReleasedJob]:
    """PENDING (due) -> QUEUED for up to ``limit`` jobs, oldest run_at first.

    The caller publishes one run_job message per released job after this commits (and hands
    the jobs back with :func:`job_unrelease` if it cannot).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _RELEASE_SQL.format(queues=_queue_filter(queues)),
            {"now": timezone.now(), "limit": limit, "queues": list(queues or [])},
        )
        rows = cursor.fetchall()
    return [_released(row) for row in rows]


def _released(row: tuple[Any, ...]) -> ReleasedJob:
    job_id, queue, priority, attempts, timeout = row
    return ReleasedJob(
        id=job_id, queue=queue, priority=priority, attempt=attempts + 1, timeout=timeout
    )


_RELEASE_LOST_SQL = """
WITH lost AS (
    SELECT id FROM jobs_job
    WHERE ((status = 'queued' AND queued_at < %(cutoff)s)
       OR (status = 'retrying' AND next_attempt_at < %(cutoff)s)) {queues}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED  -- several dispatchers: each lost job is published again once
)
UPDATE jobs_job AS j
SET queued_at = CASE WHEN j.status = 'queued' THEN %(now)s ELSE j.queued_at END,
    next_attempt_at = CASE WHEN j.status = 'retrying' THEN %(now)s ELSE j.next_attempt_at END,
    updated_at = %(now)s
FROM lost
WHERE j.id = lost.id AND j.status IN ('queued', 'retrying')
RETURNING j.id, j.queue, j.priority, j.attempts, j.timeout
"""


def job_release_lost(
    *, older_than: float, limit: int, queues: Sequence[str] | None = None
) -> list[ReleasedJob]:
    """Publish again the jobs whose message should have started them ``older_than`` seconds ago.

    A QUEUED job not claimed since it was queued, or a RETRYING job not claimed since its retry
    was due, has lost its message (Redis restarted empty, a worker died holding a retry). The
    clock restarts, so a job is published again at most once per ``older_than``; if the old
    message does turn up, one of the two claims the attempt and the other finds nothing.
    """
    now = timezone.now()
    params = {
        "cutoff": now - timedelta(seconds=older_than),
        "limit": limit,
        "now": now,
        "queues": list(queues or []),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RELEASE_LOST_SQL.format(queues=_queue_filter(queues)), params)
        rows = cursor.fetchall()
    return [_released(row) for row in rows]


def job_unrelease(*, job_ids: list[UUID]) -> int:
    """QUEUED -> PENDING for jobs whose message could not be published, so none is stranded."""
    return Job.objects.filter(id__in=job_ids, status=Job.Status.QUEUED).update(
        status=Job.Status.PENDING, queued_at=None, updated_at=Now(), version=F("version") + 1
    )


def job_next_due_at(*, queues: Sequence[str] | None = None) -> datetime | None:
    """The earliest run_at among PENDING jobs (the partial index answers it)."""
    pending = Job.objects.filter(status=Job.Status.PENDING)
    if queues:
        pending = pending.filter(queue__in=queues)
    return pending.order_by("run_at").values_list("run_at", flat=True).first()


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
            _notify_dispatchers()
    return retried
