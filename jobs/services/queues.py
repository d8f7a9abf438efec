"""Operators' controls at run time: a queue's pause and in-flight cap, an owner's quota.

A queue's state is a row of jobs_queue, created on first change; the dispatchers read it at
every release (docs/architecture.md#flow-control).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from jobplatform.errors import InvalidInput, NotFound
from jobplatform.services import Action, audit_record
from jobs.models import OwnerQuota, Queue
from jobs.services.common import notify_dispatchers
from jobs.services.release import RELEASE_LOCK, job_unrelease

MAX_IN_FLIGHT = 1_000_000


def queue_known(name: str) -> bool:
    return name in settings.JOBPLATFORM_QUEUES or Queue.objects.filter(name=name).exists()


def _row(name: str) -> Queue:
    """The queue's row, locked, created with the defaults if it has none yet."""
    if not queue_known(name):
        raise NotFound("QUEUES.NOT_FOUND", f"no queue {name!r}", {"queues": _names()})
    Queue.objects.get_or_create(name=name)
    return Queue.objects.select_for_update().get(name=name)


def _names() -> list[str]:
    return sorted(
        set(settings.JOBPLATFORM_QUEUES) | set(Queue.objects.values_list("name", flat=True))
    )


def _take_release_lock() -> None:
    # Taken as every release takes it: a release that read the queue as running has committed
    # before this change, and every later one reads the change.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RELEASE_LOCK])


def queue_pause(*, name: str, actor: User | None) -> Queue:
    """Stop releasing the queue's jobs. Idempotent.

    Its waiting jobs stay PENDING (or RETRYING) and spend no attempt; its QUEUED jobs, whose
    messages no worker has taken yet, go back to PENDING too (their messages find nothing to
    claim); its RUNNING jobs finish. The audit trail names ``actor`` (None: the system).
    """
    with transaction.atomic():
        _take_release_lock()
        queue = _row(name)
        if not queue.paused:
            queue.paused, queue.paused_at = True, timezone.now()
            queue.save(update_fields=["paused", "paused_at", "updated_at"])
        unreleased = job_unrelease(queue=name)
        audit_record(
            action=Action.QUEUE_PAUSED,
            actor=actor,
            subject=f"queue {name}",
            details={"unreleased": unreleased},
        )
    return queue


def queue_resume(*, name: str, actor: User | None) -> Queue:
    """Release the queue's jobs again, waking the dispatchers at commit. Idempotent."""
    with transaction.atomic():
        queue = _row(name)
        if queue.paused:
            queue.paused, queue.paused_at = False, None
            queue.save(update_fields=["paused", "paused_at", "updated_at"])
        audit_record(action=Action.QUEUE_RESUMED, actor=actor, subject=f"queue {name}")
        notify_dispatchers()
    return queue


def queue_set_max_in_flight(*, name: str, max_in_flight: int | None, actor: User | None) -> Queue:
    """Set the queue's in-flight cap (QUEUED + RUNNING); None: the default
    (JOBPLATFORM_QUEUE_MAX_IN_FLIGHT). A lower cap stops releases until the queue is under it;
    jobs already released run."""
    if max_in_flight is not None and not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise InvalidInput(
            "QUEUES.INVALID_MAX_IN_FLIGHT",
            f"max_in_flight must be between 1 and {MAX_IN_FLIGHT}, or null for the default",
        )
    with transaction.atomic():
        queue = _row(name)
        before = queue.max_in_flight
        queue.max_in_flight = max_in_flight
        queue.save(update_fields=["max_in_flight", "updated_at"])
        audit_record(
            action=Action.QUEUE_CAP_CHANGED,
            actor=actor,
            subject=f"queue {name}",
            details={"max_in_flight": [before, max_in_flight]},
        )
        notify_dispatchers()  # a higher cap makes room at once
    return queue


def queue_ensure_rows() -> None:
    """A row for every queue of JOBPLATFORM_QUEUES (after migrate), so that operators find each
    in the admin; a queue without one runs with the defaults all the same."""
    for name in settings.JOBPLATFORM_QUEUES:
        Queue.objects.get_or_create(name=name)


def owner_quota_set(
    *, owner_id: Any, weight: int, max_unfinished: int | None, actor: User | None
) -> OwnerQuota:
    """An owner's fair-share weight (1 to 100) and cap on unfinished jobs (None: the default).
    Web processes apply a new cap at their next recount (JOBPLATFORM_ADMISSION_RECOUNT)."""
    if not 1 <= weight <= 100:
        raise InvalidInput("QUOTAS.INVALID_WEIGHT", "weight must be between 1 and 100")
    if max_unfinished is not None and max_unfinished < 1:
        raise InvalidInput("QUOTAS.INVALID_MAX_UNFINISHED", "max_unfinished must be 1 or more")
    with transaction.atomic():
        quota, _ = OwnerQuota.objects.update_or_create(
            owner_id=owner_id, defaults={"weight": weight, "max_unfinished": max_unfinished}
        )
        audit_record(
            action=Action.QUOTA_CHANGED,
            actor=actor,
            subject=f"quota of {quota.owner.get_username()}",
            details={"weight": weight, "max_unfinished": max_unfinished},
        )
    return quota
