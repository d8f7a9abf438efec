"""Submitting jobs: one, or many at once, validated against the step registry."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobplatform.errors import Conflict, InvalidInput
from jobplatform.tracing import new_trace_id
from jobs.models import BulkSubmission, Job
from jobs.services.admission import admission
from jobs.services.rows import job_insert, job_values
from jobs.services.spec import JobSpec, job_validate


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an earlier submission with the same idempotency key is answered


def job_submit(
    *,
    owner: User,
    spec: JobSpec,
    idempotency_key: str | None = None,
    trace_id: str | None = None,
) -> Submission:
    """Store a new PENDING job and wake the dispatchers when the transaction commits.

    Nothing is published to the broker here: the dispatcher releases the job once it is due, so a
    rolled-back submission never reaches a worker. With an idempotency key, a repeat of the same
    body returns the original job (created=False) and a different body raises Conflict. A new
    job past its owner's or the platform's cap on unfinished jobs raises TooManyRequests.
    ``trace_id``: the submitting request's (else the job gets a new one).
    """
    job_validate(spec=spec)
    fingerprint = _fingerprint(spec) if idempotency_key else ""
    for _ in range(3):  # a concurrent submission or an expiring key may need another look
        if idempotency_key:
            earlier = _earlier_submission(owner, idempotency_key, fingerprint)
            if earlier is not None:
                return Submission(job=earlier, created=False)
        admission.check(owner_id=owner.pk, count=1)
        values = job_values(
            owner_id=owner.pk,
            spec=spec,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            trace_id=trace_id or new_trace_id(),
        )
        try:
            # Inside a caller's transaction a savepoint keeps a key collision from aborting it.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                job_insert([values])
            admission.admitted(owner_id=owner.pk, count=1)
            return Submission(job=_stored(owner, values), created=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            # Another request with this key committed first: answer with its job.
    raise Conflict("JOBS.IDEMPOTENCY_KEY_BUSY", "the idempotency key is in use; try again")


@dataclass(frozen=True)
class BulkSubmitted:
    ids: list[UUID]  # in the order submitted
    created: bool  # False: an earlier bulk submission with the same idempotency key is answered


def job_submit_many(
    *,
    owner: User,
    specs: list[JobSpec],
    idempotency_key: str | None = None,
    trace_id: str | None = None,
) -> BulkSubmitted:
    """Store many PENDING jobs in one transaction: one COPY, one NOTIFY.

    All or nothing: the first invalid spec rejects the batch, naming its index, and a batch that
    would pass the owner's or the platform's cap on unfinished jobs is refused whole, storing
    nothing (not even its idempotency key). With an idempotency key, a repeat of the same batch
    within JOBPLATFORM_IDEMPOTENCY_TTL_HOURS answers the jobs the first one made (created=False,
    not counted against the caps again) and a different batch raises Conflict: the key and the
    jobs' ids are stored as a BulkSubmission in the transaction that inserts the jobs, so of two
    concurrent submissions with one key exactly one commits its jobs. Every job gets
    ``trace_id`` (the request's), or one new trace id for the batch.
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
    trace_id = trace_id or new_trace_id()
    rows = [job_values(owner_id=owner.pk, spec=spec, trace_id=trace_id) for spec in specs]
    if idempotency_key is None:
        admission.check(owner_id=owner.pk, count=len(rows))
        with transaction.atomic():
            ids = job_insert(rows)
        admission.admitted(owner_id=owner.pk, count=len(ids))
        return BulkSubmitted(ids=ids, created=True)
    fingerprint = hashlib.sha256(
        "\n".join(_fingerprint(spec) for spec in specs).encode()
    ).hexdigest()
    for _ in range(3):  # a concurrent submission or an expiring key may need another look
        earlier = _earlier_bulk(owner, idempotency_key, fingerprint)
        if earlier is not None:
            return BulkSubmitted(ids=[UUID(i) for i in earlier.job_ids], created=False)
        # Refused here, the batch stores nothing: a later repeat with the key is admitted anew.
        admission.check(owner_id=owner.pk, count=len(rows))
        try:
            with transaction.atomic():
                ids = job_insert(rows)
                BulkSubmission.objects.create(
                    owner=owner,
                    idempotency_key=idempotency_key,
                    request_fingerprint=fingerprint,
                    job_ids=[str(i) for i in ids],
                )
            admission.admitted(owner_id=owner.pk, count=len(ids))
            return BulkSubmitted(ids=ids, created=True)
        except IntegrityError:
            pass  # another request with this key committed first (its jobs stand, these do not)
    raise Conflict("JOBS.IDEMPOTENCY_KEY_BUSY", "the idempotency key is in use; try again")


def _earlier_bulk(owner: User, key: str, fingerprint: str) -> BulkSubmission | None:
    """The live bulk submission made with ``key``; expired ones (any key) are deleted."""
    expired = timezone.now() - timedelta(hours=settings.JOBPLATFORM_IDEMPOTENCY_TTL_HOURS)
    BulkSubmission.objects.filter(owner=owner, created_at__lt=expired).delete()
    earlier = BulkSubmission.objects.filter(owner=owner, idempotency_key=key).first()
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise Conflict(
            "JOBS.IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was used for a different bulk submission",
            {"job_ids": earlier.job_ids[:10], "count": len(earlier.job_ids)},
        )
    return earlier


def _stored(owner: User, values: dict[str, Any]) -> Job:
    """The Job just inserted from ``values``, without reading it back."""
    job = Job(**values)
    job.owner = owner  # the response names its owner: no query to load it again
    job._state.adding = False
    job._state.db = connection.alias
    return job


# Fields added after fingerprints were first stored, left out while they keep their defaults,
# so that a submission repeated across the upgrade still matches its stored fingerprint.
_LATER_FIELDS = {
    "concurrency_key": None,
    "max_concurrency": 1,
    "rate_limit": None,
    "callback_url": "",
}


def _fingerprint(spec: JobSpec) -> str:
    body = asdict(spec)
    for name, default in _LATER_FIELDS.items():
        if body[name] == default:
            del body[name]
    body["run_at"] = spec.run_at.isoformat() if spec.run_at else None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _earlier_submission(owner: User, key: str, fingerprint: str) -> Job | None:
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
