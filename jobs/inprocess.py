"""The jobs Python API, for Django code in the same project: submit, submit many, get, cancel,
without HTTP (docs/python-api.md).

    from jobs import inprocess as jobs

    job = jobs.submit(owner=user, name="nightly", steps=[{"type": "log", "params": {...}}])
    jobs.cancel(job_id=job.id)

The same rules as the REST API: the same validation (``InvalidInput`` with the API's ``JOBS.*``
codes), idempotency keys, the same lifecycle. A submission made inside the caller's transaction
is stored, and wakes the dispatchers, when that transaction commits: a rolled-back transaction
never runs its jobs. The steps themselves are registered with :func:`jobs.steps.step`.

Every function takes keyword arguments. ``user`` (optional on reads and cancel) limits the call to
the jobs that user may see, as the API does; without it, the caller is trusted with every job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User

from jobplatform.errors import NotFound
from jobplatform.tracing import current_trace_id
from jobs import services
from jobs.models import Job
from jobs.selectors import job_get_visible
from jobs.services import JobSpec

__all__ = ["JobSpec", "cancel", "get", "submit", "submit_many"]


def submit(
    *,
    owner: User,
    name: str,
    steps: Sequence[Mapping[str, Any]],
    input: Any = None,
    queue: str = JobSpec.queue,
    priority: int = JobSpec.priority,
    max_retries: int = JobSpec.max_retries,
    retry_backoff: float = JobSpec.retry_backoff,
    retry_backoff_max: float = JobSpec.retry_backoff_max,
    retry_jitter: bool = JobSpec.retry_jitter,
    timeout: int = JobSpec.timeout,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
    max_concurrency: int = JobSpec.max_concurrency,
    rate_limit: str | None = None,
    callback_url: str = JobSpec.callback_url,
) -> Job:
    """Store a PENDING job owned by ``owner`` and answer it; it runs once ``run_at`` (now by
    default) comes. The fields are those of ``POST /api/v1/jobs/``. With ``idempotency_key``, a
    repeat of the same submission answers the job the first one made. Raises InvalidInput
    (``JOBS.*``), Conflict (``JOBS.IDEMPOTENCY_KEY_REUSED``) or TooManyRequests
    (``JOBS.TOO_MANY_UNFINISHED``: the owner's or the platform's cap; ``.retry_after`` seconds)."""
    spec = JobSpec(
        name=name,
        steps=[dict(s) for s in steps],
        input={} if input is None else input,
        queue=queue,
        priority=priority,
        max_retries=max_retries,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        timeout=timeout,
        run_at=run_at,
        concurrency_key=concurrency_key,
        max_concurrency=max_concurrency,
        rate_limit=rate_limit,
        callback_url=callback_url,
    )
    # Submitted from a step's code, the job inherits the running job's trace id (bound per task).
    return services.job_submit(
        owner=owner, spec=spec, idempotency_key=idempotency_key, trace_id=current_trace_id()
    ).job


def submit_many(
    *,
    owner: User,
    jobs: Sequence[JobSpec | Mapping[str, Any]],
    idempotency_key: str | None = None,
) -> list[UUID]:
    """Store up to JOBPLATFORM_MAX_BULK_JOBS jobs, all or none, in one transaction; answer their
    ids in order. Each job is a :class:`JobSpec` or a mapping of its fields. With
    ``idempotency_key``, a repeat of the same batch answers the first one's ids. A batch past a
    cap on unfinished jobs raises TooManyRequests and stores nothing."""
    specs = [job if isinstance(job, JobSpec) else JobSpec(**job) for job in jobs]
    return services.job_submit_many(
        owner=owner, specs=specs, idempotency_key=idempotency_key, trace_id=current_trace_id()
    ).ids


def get(*, job_id: UUID, user: User | None = None) -> Job:
    """The job (its attempts: ``job.executions``); NotFound ``JOBS.NOT_FOUND`` if there is none,
    or none ``user`` may see."""
    if user is not None:
        return job_get_visible(job_id=job_id, user=user)
    job = Job.objects.filter(id=job_id).first()
    if job is None:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}")
    return job


def cancel(*, job_id: UUID, user: User | None = None) -> Job:
    """Cancel a job that has not finished (a cancelled one: a no-op) and answer it. Raises
    Conflict ``JOBS.NOT_CANCELLABLE`` once it succeeded or failed. A running attempt stops at
    its next heartbeat or step boundary. The audit trail records the cancel (``job.cancelled``)
    as ``user``'s, or the platform's without one."""
    job = get(job_id=job_id, user=user)
    services.job_cancel(job_id=job.id, actor=user)
    job.refresh_from_db()
    return job
