"""Submitting jobs: one, or many at once, validated against the step registry."""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import JSONField
from django.utils import timezone

from jobplatform.db import prepared_cursor
from jobplatform.errors import Conflict, InvalidInput
from jobs.models import Job
from jobs.services.common import DISPATCH_CHANNEL, notify_dispatchers
from jobs.steps import get_step, registered_steps


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
        job = _new_job(owner, spec, idempotency_key, fingerprint)
        try:
            # Inside a caller's transaction a savepoint keeps a key collision from aborting it.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                _insert_job(job)
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
    rows = [_job_values(owner.pk, spec, None, "") for spec in specs]
    with transaction.atomic():
        _copy_jobs(rows)
        notify_dispatchers()
    return [row["id"] for row in rows]


_JOB_FIELDS = list(Job._meta.concrete_fields)
_JSON_FIELDS = {f.attname for f in _JOB_FIELDS if isinstance(f, JSONField)}
_JOB_COLUMNS = ", ".join(connection.ops.quote_name(f.column) for f in _JOB_FIELDS)


def _copy_jobs(rows: list[dict[str, Any]]) -> None:
    """COPY the rows in: bulk_create's per-object and per-field work cost more than the database
    did (measured in docs/performance.md). Columns left out of a row take the field's default."""
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY jobs_job ({_JOB_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([_cell(f, row) for f in _JOB_FIELDS])


# One statement, so that in autocommit the row and the dispatchers' wake-up commit together
# without BEGIN and COMMIT round trips; prepared, so that it is planned once per connection.
# Through Model.save() a submission spent more CPU compiling its INSERT than PostgreSQL spent
# running it (docs/performance.md). Columns come from the model, values are parameters.
_INSERT_JOB = "WITH new AS (INSERT INTO jobs_job ({}) VALUES ({})) SELECT pg_notify(%s, '')".format(  # noqa: S608
    _JOB_COLUMNS,
    ", ".join("%s::jsonb" if f.attname in _JSON_FIELDS else "%s" for f in _JOB_FIELDS),
)


def _insert_job(job: Job) -> None:
    """INSERT ``job`` as it stands (defaults included) and NOTIFY the dispatchers."""
    row = {f.attname: getattr(job, f.attname) for f in _JOB_FIELDS}
    with prepared_cursor() as cursor:
        cursor.execute(
            _INSERT_JOB, [*(_cell(f, row) for f in _JOB_FIELDS), DISPATCH_CHANNEL], prepare=True
        )
    job._state.adding = False
    job._state.db = connection.alias


def _cell(field: Any, row: dict[str, Any]) -> Any:
    value = row[field.attname] if field.attname in row else field.get_default()
    if field.attname in _JSON_FIELDS and value is not None:
        return json.dumps(value)
    return value


def _new_job(
    owner: AbstractBaseUser, spec: JobSpec, idempotency_key: str | None, fingerprint: str
) -> Job:
    job = Job(**_job_values(owner.pk, spec, idempotency_key, fingerprint))
    job.owner = owner  # the response names its owner: no query to load it again
    return job


def _job_values(
    owner_id: Any, spec: JobSpec, idempotency_key: str | None, fingerprint: str
) -> dict[str, Any]:
    """A new job's fields from a submission; the rest take the model's defaults."""
    now = timezone.now()
    return {
        "id": uuid.uuid4(),
        "owner_id": owner_id,
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
