"""Operator actions: retry and dismiss, one entry or many, each kept in the audit trail.

A state change of an entry is one conditional UPDATE (``… WHERE state IN (…)``) whose row count is
the answer; a retry moves the job FAILED -> PENDING in the same transaction through
:func:`jobs.services.job_retry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from deadletter.models import DeadLetter, DeadLetterAction
from jobplatform.errors import Conflict, InvalidInput, NotFound
from jobplatform.models import AuditEvent
from jobplatform.services import audit_record
from jobs import lifecycle
from jobs.lifecycle import Transition
from jobs.models import Job
from jobs.services import job_retry
from jobs.services.admission import admission

State = DeadLetter.State
Kind = DeadLetterAction.Kind

# A dismissed entry may still be retried (the operator changed their mind); a retried one is done:
# if the job fails again, that is a new entry.
RETRYABLE = frozenset({State.OPEN, State.DISMISSED})
DISMISSABLE = frozenset({State.OPEN})
BULK_BATCH = 500


@dataclass(frozen=True)
class RetryOverrides:
    """What an operator may change for one retry. None keeps the job's own value."""

    max_retries: int | None = None
    input: Any = None
    from_step: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_retries, self.input, self.from_step))


@dataclass(frozen=True)
class BulkOutcome:
    selected: int  # entries the selection matched (and the actor may act on)
    done: int  # entries retried, or dismissed

    @property
    def skipped(self) -> int:
        """Selected but not in a state for the action (already retried, dismissed, …)."""
        return self.selected - self.done


def dead_letter_retry(
    *,
    dead_letter_id: int,
    actor: User,
    note: str = "",
    overrides: RetryOverrides | None = None,
) -> None:
    """OPEN|DISMISSED -> RETRIED, and its job FAILED -> PENDING, in one transaction.

    The job keeps its history and attempt numbering, gets a fresh retry budget and resumes at the
    failed step (or ``overrides.from_step``). Overrides are recorded as an ``edit`` action with
    the values before and after. Raises Conflict (DEADLETTER.JOB_NOT_FAILED,
    DEADLETTER.ALREADY_RETRIED) when there is nothing to retry: a second retry changes nothing.
    """
    overrides = overrides or RetryOverrides()
    now = timezone.now()
    with transaction.atomic():
        # This UPDATE's row lock serialises two operators acting on one entry: the second waits,
        # then matches nothing and is told why below.
        updated = DeadLetter.objects.filter(id=dead_letter_id, state__in=RETRYABLE).update(
            state=State.RETRIED, resolved_at=now, resolved_by=actor, note=note
        )
        if not updated:
            raise _not_retryable(dead_letter_id)
        dead = DeadLetter.objects.select_related("job").get(id=dead_letter_id)
        job = dead.job
        if overrides.from_step is not None and overrides.from_step > job.next_step:
            raise InvalidInput(
                "DEADLETTER.INVALID_FROM_STEP",
                f"the job can be retried from step 0 to {job.next_step} (the step that failed); "
                "a later step has no stored outputs before it",
                {"from_step": overrides.from_step, "max": job.next_step},
            )
        if not _retry_job(job.id, overrides):
            # Raising rolls the entry's update back with it.
            raise Conflict(
                "DEADLETTER.JOB_NOT_FAILED",
                f"the job is {job.status}, not failed",
                {"job_status": job.status},
            )
        if overrides:
            _audit(dead.id, Kind.EDIT, actor, note, _changes(job, overrides), now)
        _audit(dead.id, Kind.RETRY, actor, note, {"attempts_before": job.attempts}, now)


def job_retry_with_dead_letter(
    *,
    job_id: UUID,
    actor: User,
    note: str = "",
    overrides: RetryOverrides | None = None,
) -> None:
    """Retry one job (FAILED|CANCELLED -> PENDING) with a dead letter's overrides.

    A failed job's open (or dismissed) dead letter is retried with it, through
    :func:`dead_letter_retry`, so the entry is closed and the retry is in its audit trail; a job
    without one (cancelled, or its entry purged) is retried directly. Raises NotFound
    JOBS.NOT_FOUND, InvalidInput JOBS.INVALID_FROM_STEP (a step after the one it stopped at),
    Conflict JOBS.NOT_RETRYABLE (it is not failed or cancelled), TooManyRequests
    JOBS.TOO_MANY_UNFINISHED: a retried job is unfinished again, so it counts against its owner's
    and the platform's caps like a submission (a dead letter's own retry, an operator's recovery
    tool, does not: :func:`dead_letter_retry`).

    No lock is taken here: a failed job's entry is recorded in the transaction that failed it, and
    :func:`dead_letter_retry` and :func:`job_retry` are each one conditional UPDATE, so two
    retries at once move the job once and the second is told why (a 409).
    """
    overrides = overrides or RetryOverrides()
    job = Job.objects.filter(id=job_id).only("status", "next_step", "owner_id").first()
    if job is None:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}")
    if overrides.from_step is not None and overrides.from_step > job.next_step:
        raise InvalidInput(
            "JOBS.INVALID_FROM_STEP",
            f"the job can be retried from step 0 to {job.next_step} (where it stopped); "
            "a later step has no stored outputs before it",
            {"from_step": overrides.from_step, "max": job.next_step},
        )
    if job.status in lifecycle.JOB_RETRY.sources:  # else the transition below answers 409
        admission.check(owner_id=job.owner_id, count=1)
    dead_letter_id = (
        DeadLetter.objects.filter(job_id=job_id, state__in=RETRYABLE)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    if dead_letter_id is not None:
        dead_letter_retry(
            dead_letter_id=dead_letter_id, actor=actor, note=note, overrides=overrides
        )
    elif not _retry_job(job_id, overrides, lifecycle.JOB_RETRY):
        status = Job.objects.filter(id=job_id).values_list("status", flat=True).first()
        raise Conflict(
            "JOBS.NOT_RETRYABLE",
            f"only a failed or cancelled job can be retried; it is {status}",
            {"status": status},
        )
    admission.admitted(owner_id=job.owner_id, count=1)


def _retry_job(
    job_id: UUID, overrides: RetryOverrides, transition: Transition = lifecycle.MANUAL_RETRY
) -> bool:
    """The job back to PENDING with ``overrides``; False if it was not in a state to retry."""
    retried = job_retry(
        job_ids=[job_id],
        max_retries=overrides.max_retries,
        input=overrides.input,
        from_step=overrides.from_step,
        transition=transition,
    )
    return bool(retried)


def _changes(job: Job, overrides: RetryOverrides) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if overrides.max_retries is not None:
        changes["max_retries"] = {"from": job.max_retries, "to": overrides.max_retries}
    if overrides.input is not None:
        changes["input"] = {"from": job.input, "to": overrides.input}
    if overrides.from_step is not None:
        changes["from_step"] = {"from": job.next_step, "to": overrides.from_step}
    return changes


def _not_retryable(dead_letter_id: int) -> Exception:
    dead = DeadLetter.objects.select_related("job").filter(id=dead_letter_id).first()
    if dead is None:  # purged since the caller looked it up
        return NotFound("DEADLETTER.NOT_FOUND", f"no dead letter {dead_letter_id}")
    if dead.job.status != Job.Status.FAILED:
        return Conflict(
            "DEADLETTER.JOB_NOT_FAILED",
            f"the job is {dead.job.status}, not failed: it was retried already",
            {"job_status": dead.job.status, "state": dead.state},
        )
    newer = dead.job.dead_letters.filter(state__in=RETRYABLE).values_list("id", flat=True).first()
    return Conflict(
        "DEADLETTER.ALREADY_RETRIED",
        "this entry was retried already and the job failed again"
        + (f": retry dead letter {newer}" if newer else ""),
        {"state": dead.state, "job_status": dead.job.status, "current_dead_letter": newer},
    )


def dead_letter_retry_bulk(
    *,
    selection: QuerySet[DeadLetter],
    actor: User,
    note: str = "",
    batch_size: int = BULK_BATCH,
) -> BulkOutcome:
    """Retry every retryable entry of ``selection`` (a selector's queryset), in batches.

    Each batch is one transaction of set-based statements — lock the batch's entries, one
    :func:`job_retry` UPDATE for their jobs (which wakes the dispatchers at commit), one UPDATE of
    the entries whose job was FAILED, one INSERT of their audit rows — so thousands of entries
    cost a few statements per batch and no lock is held for long. Entries not retryable, or whose
    job is not FAILED, are counted as skipped.
    """

    def retry(batch: list[tuple[int, UUID, str]], now: datetime) -> list[int]:
        candidates = {dl_id: job_id for dl_id, job_id, state in batch if state in RETRYABLE}
        retried_jobs = set(job_retry(job_ids=list(set(candidates.values()))))
        ids = [dl_id for dl_id, job_id in candidates.items() if job_id in retried_jobs]
        DeadLetter.objects.filter(id__in=ids, state__in=RETRYABLE).update(
            state=State.RETRIED, resolved_at=now, resolved_by=actor, note=note
        )
        _audit_many(ids, Kind.RETRY, actor, note, {"bulk": True}, now)
        return ids

    outcome = _in_batches(selection, batch_size, retry)
    _audit_bulk(AuditEvent.Action.BULK_RETRY, actor, note, outcome)
    return outcome


def dead_letter_dismiss(*, dead_letter_id: int, actor: User, note: str = "") -> None:
    """OPEN -> DISMISSED: the job stays FAILED. Raises Conflict if the entry is not open."""
    now = timezone.now()
    with transaction.atomic():
        updated = DeadLetter.objects.filter(id=dead_letter_id, state__in=DISMISSABLE).update(
            state=State.DISMISSED, resolved_at=now, resolved_by=actor, note=note
        )
        if not updated:
            state = (
                DeadLetter.objects.filter(id=dead_letter_id).values_list("state", flat=True).first()
            )
            if state is None:  # purged since the caller looked it up
                raise NotFound("DEADLETTER.NOT_FOUND", f"no dead letter {dead_letter_id}")
            code = (
                "DEADLETTER.ALREADY_DISMISSED"
                if state == State.DISMISSED
                else "DEADLETTER.ALREADY_RETRIED"
            )
            raise Conflict(code, f"the dead letter is {state}, not open", {"state": state})
        _audit(dead_letter_id, Kind.DISMISS, actor, note, {}, now)


def dead_letter_dismiss_bulk(
    *,
    selection: QuerySet[DeadLetter],
    actor: User,
    note: str = "",
    batch_size: int = BULK_BATCH,
) -> BulkOutcome:
    """Dismiss every open entry of ``selection``, in batches of set-based statements."""

    def dismiss(batch: list[tuple[int, UUID, str]], now: datetime) -> list[int]:
        ids = [dl_id for dl_id, _job_id, state in batch if state in DISMISSABLE]
        DeadLetter.objects.filter(id__in=ids, state__in=DISMISSABLE).update(
            state=State.DISMISSED, resolved_at=now, resolved_by=actor, note=note
        )
        _audit_many(ids, Kind.DISMISS, actor, note, {"bulk": True}, now)
        return ids

    outcome = _in_batches(selection, batch_size, dismiss)
    _audit_bulk(AuditEvent.Action.BULK_DISMISS, actor, note, outcome)
    return outcome


def _audit_bulk(action: str, actor: User, note: str, outcome: BulkOutcome) -> None:
    """One row in the platform's security audit trail for the whole bulk action (each entry
    has its own DeadLetterAction row as well)."""
    audit_record(
        action=action,
        actor=actor,
        subject=f"{outcome.selected} dead letter(s)",
        details={
            "selected": outcome.selected,
            "done": outcome.done,
            "skipped": outcome.skipped,
            "note": note,
        },
    )


def _in_batches(
    selection: QuerySet[DeadLetter],
    batch_size: int,
    act: Callable[[list[tuple[int, UUID, str]], datetime], list[int]],
) -> BulkOutcome:
    """Walk ``selection`` by id in locked batches, one transaction each; ``act`` returns the ids
    it changed. No lock is held across batches, so thousands of entries never block for long."""
    selected = done = last_id = 0
    while True:
        with transaction.atomic():
            batch = _lock_batch(selection, after=last_id, size=batch_size)
            done += len(act(batch, timezone.now()))
        selected += len(batch)
        if len(batch) < batch_size:
            return BulkOutcome(selected=selected, done=done)
        last_id = batch[-1][0]


def _lock_batch(
    selection: QuerySet[DeadLetter], *, after: int, size: int
) -> list[tuple[int, UUID, str]]:
    """The next ``size`` entries of ``selection`` with an id above ``after``, locked, as
    ``(id, job_id, state)``. Call it inside the batch's transaction.

    Keyset (``id > after``), not offset: entries an earlier batch changed may leave a filtered
    selection while skipped ones stay in it, and neither shifts what the next batch sees.
    """
    # The selection (visibility, filters: joins, maybe DISTINCT) picks the ids; the outer query
    # locks those rows alone, in id order, so a concurrent retry or dismissal of one of them
    # waits, then finds it done, and the state read here is the locked row's.
    ids = selection.filter(id__gt=after).order_by("id").values("id")[:size]
    return list(
        DeadLetter.objects.filter(id__in=ids)
        .order_by("id")
        .select_for_update()
        .values_list("id", "job_id", "state")
    )


def _audit(
    dead_letter_id: int,
    kind: str,
    actor: User,
    note: str,
    details: dict[str, Any],
    at: datetime,
) -> None:
    _audit_many([dead_letter_id], kind, actor, note, details, at)


def _audit_many(
    ids: list[int],
    kind: str,
    actor: User,
    note: str,
    details: dict[str, Any],
    at: datetime,
) -> None:
    DeadLetterAction.objects.bulk_create(
        DeadLetterAction(
            dead_letter_id=dl_id,
            kind=kind,
            actor=actor,
            actor_name=actor.get_username(),
            note=note,
            details=details,
            created_at=at,
        )
        for dl_id in ids
    )
