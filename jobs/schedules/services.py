"""Schedules (DESIGN §6, docs/schedules.md): a cron expression in a timezone that makes one job
per tick. Creating, editing, pausing, resuming and deleting them.

A schedule keeps its own ``next_fire_at``, computed here with ``jobs.schedules.cron`` (daylight
saving included); the dispatchers' sweep (``jobs.schedules.firing``) fires the schedules whose
``next_fire_at`` has come. Each write here holds the schedule's row lock, so a sweep either fires
the schedule before the change or skips it until the change commits; and it bumps ``version``.
A change that moves ``next_fire_at`` tells the dispatchers at commit (NOTIFY), so a sweeping
dispatcher never sleeps past a schedule's new first tick.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import UUID

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobplatform.errors import Conflict, InvalidInput, NotFound
from jobs.schedules import cron
from jobs.schedules.models import Schedule
from jobs.services import JobSpec, job_steps, job_validate
from jobs.steps.http import steps_hosts

# The dispatchers LISTEN on it: a schedule's next_fire_at moved, their sweep may be due sooner.
SCHEDULES_CHANNEL = "jobplatform_schedules"
MAX_JITTER = 3600
MAX_MISFIRE_WINDOW = 7 * 24 * 3600
MAX_MISFIRE_CAP = 100


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as the API parsed it; values are checked by :func:`schedule_validate`."""

    name: str
    cron: str
    job: JobSpec  # the template: a submission without run_at
    timezone: str = "UTC"
    overlap: str = Schedule.Overlap.ALLOW
    misfire: str = Schedule.Misfire.RUN_ONCE
    misfire_window: int = 3600  # seconds
    misfire_cap: int = 10
    start_at: datetime | None = None
    end_at: datetime | None = None
    enabled: bool = True
    jitter: int = 0  # seconds
    pause_note: str = ""


def schedule_validate(*, spec: ScheduleSpec) -> cron.Ticks:
    """Raise InvalidInput for the first rule ``spec`` breaks (SCHEDULES.* codes, or JOBS.* for
    the job template); return the schedule's fire times."""
    if not 1 <= len(spec.name) <= 200:
        raise InvalidInput("SCHEDULES.INVALID_NAME", "name must have 1 to 200 characters")
    try:
        expression = cron.parse_cron(spec.cron)
    except cron.CronError as exc:
        raise InvalidInput("SCHEDULES.INVALID_CRON", str(exc), {"cron": spec.cron}) from None
    max_length = Schedule._meta.get_field("cron").max_length
    assert max_length is not None  # a CharField(max_length=120)
    if len(expression.expression) > max_length:
        raise InvalidInput("SCHEDULES.INVALID_CRON", "the expression is too long", {})
    try:
        tz = cron.zone(spec.timezone)
    except cron.UnknownTimezone as exc:
        raise InvalidInput(
            "SCHEDULES.UNKNOWN_TIMEZONE", str(exc), {"timezone": spec.timezone}
        ) from None
    if spec.overlap not in Schedule.Overlap.values:
        raise InvalidInput(
            "SCHEDULES.INVALID_OVERLAP",
            f"overlap must be one of {', '.join(Schedule.Overlap.values)}",
        )
    _validate_misfire(spec)
    if not 0 <= spec.jitter <= MAX_JITTER:
        raise InvalidInput("SCHEDULES.INVALID_JITTER", f"jitter must be 0 to {MAX_JITTER} seconds")
    for name in ("start_at", "end_at"):
        value = getattr(spec, name)
        if value is not None and timezone.is_naive(value):
            raise InvalidInput(
                "SCHEDULES.NAIVE_DATETIME",
                f"{name} needs a UTC offset, e.g. 2026-01-01T09:00:00+01:00 or ...Z",
                {"field": name},
            )
    if spec.start_at and spec.end_at and spec.end_at <= spec.start_at:
        raise InvalidInput("SCHEDULES.INVALID_WINDOW", "end_at must be after start_at")
    if spec.job.run_at is not None:
        raise InvalidInput(
            "SCHEDULES.INVALID_JOB", "a job template has no run_at: each firing sets its own"
        )
    job_validate(spec=spec.job)
    return cron.Ticks(expression, tz)


def _validate_misfire(spec: ScheduleSpec) -> None:
    if spec.misfire not in Schedule.Misfire.values:
        raise InvalidInput(
            "SCHEDULES.INVALID_MISFIRE",
            f"misfire must be one of {', '.join(Schedule.Misfire.values)}",
        )
    if not 60 <= spec.misfire_window <= MAX_MISFIRE_WINDOW:
        raise InvalidInput(
            "SCHEDULES.INVALID_MISFIRE",
            f"misfire_window must be 60 to {MAX_MISFIRE_WINDOW} seconds",
        )
    if not 1 <= spec.misfire_cap <= MAX_MISFIRE_CAP:
        raise InvalidInput(
            "SCHEDULES.INVALID_MISFIRE", f"misfire_cap must be 1 to {MAX_MISFIRE_CAP}"
        )


def schedule_spec(*, schedule: Schedule) -> ScheduleSpec:
    """The spec a schedule was saved from: a PATCH replaces some of its fields."""
    return ScheduleSpec(
        name=schedule.name,
        cron=schedule.cron,
        job=JobSpec(**schedule.job_template),
        timezone=schedule.timezone,
        overlap=schedule.overlap,
        misfire=schedule.misfire,
        misfire_window=schedule.misfire_window,
        misfire_cap=schedule.misfire_cap,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
        enabled=schedule.enabled,
        jitter=schedule.jitter,
        pause_note=schedule.pause_note,
    )


# --- create, update, pause, resume, delete -----------------------------------------------------


def schedule_create(*, owner: User, spec: ScheduleSpec, now: datetime | None = None) -> Schedule:
    """A new schedule; the dispatchers are told at commit.

    ``next_fire_at`` is its first tick at or after now (or start_at); none while paused.
    SCHEDULES.NAME_TAKEN (409) if the owner already has a schedule of that name.
    """
    now = now or timezone.now()
    ticks = schedule_validate(spec=spec)
    if spec.end_at is not None and spec.end_at <= now:
        raise InvalidInput("SCHEDULES.INVALID_WINDOW", "end_at is in the past")
    schedule = Schedule(id=uuid.uuid4(), owner_id=owner.pk, created_at=now, updated_at=now)
    _assign(schedule, spec)
    if spec.enabled:
        schedule.next_fire_at = _first_fire(ticks, since=now, schedule=schedule)
    else:
        schedule.paused_at = now
    with _unique_name(spec.name), transaction.atomic():
        schedule.save(force_insert=True)
        _notify_sweepers()
    return schedule


def schedule_update(
    *, schedule_id: UUID, spec: ScheduleSpec, now: datetime | None = None
) -> Schedule:
    """Replace a schedule's settings; ``next_fire_at`` is recomputed.

    A tick that was due and had not fired yet stays due (the new expression's first tick at or
    after it), so an edit racing a sweep never drops a firing; otherwise the next tick is the first
    at or after now. Switching ``enabled`` pauses or resumes as those services do.
    """
    now = now or timezone.now()
    ticks = schedule_validate(spec=spec)
    with _unique_name(spec.name), transaction.atomic():
        schedule = _locked(schedule_id)
        if spec.end_at is not None and spec.end_at != schedule.end_at and spec.end_at <= now:
            raise InvalidInput("SCHEDULES.INVALID_WINDOW", "end_at is in the past")
        was_enabled, due = schedule.enabled, schedule.next_fire_at
        _assign(schedule, spec)
        if not spec.enabled:
            schedule.next_fire_at = None
            schedule.paused_at = now if was_enabled else schedule.paused_at
        else:
            since = due if was_enabled and due is not None and due <= now else now
            schedule.next_fire_at = _first_fire(ticks, since=since, schedule=schedule)
            if not was_enabled:  # resumed by the edit
                schedule.paused_at, schedule.pause_note = None, ""
        _save(schedule, now)
    return schedule


def schedule_pause(*, schedule_id: UUID, note: str = "", now: datetime | None = None) -> Schedule:
    """Stop firing: next_fire_at is cleared. Idempotent: pausing a paused
    schedule keeps its pause time (and replaces the note, if one is given)."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(schedule_id)
        if schedule.enabled:
            schedule.enabled, schedule.paused_at, schedule.next_fire_at = False, now, None
            schedule.pause_note = note
        elif note:
            schedule.pause_note = note
        else:
            return schedule
        _save(schedule, now)
    return schedule


def schedule_resume(*, schedule_id: UUID, now: datetime | None = None) -> Schedule:
    """Fire again from the first tick at or after now. The ticks that fell while the schedule was
    paused were skipped on purpose: they are not misfires and do not run. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(schedule_id)
        if schedule.enabled:
            return schedule
        schedule.enabled, schedule.paused_at, schedule.pause_note = True, None, ""
        ticks = cron.ticks(schedule.cron, schedule.timezone)
        schedule.next_fire_at = _first_fire(ticks, since=now, schedule=schedule)
        _save(schedule, now)
    return schedule


def schedule_delete(*, schedule_id: UUID) -> None:
    """Delete a schedule and its firings. Its jobs stay, with ``schedule`` set to null;
    unfinished ones run to their end."""
    with transaction.atomic():
        _locked(schedule_id).delete()


def _assign(schedule: Schedule, spec: ScheduleSpec) -> None:
    schedule.name = spec.name
    schedule.cron = cron.parse_cron(spec.cron).expression  # whitespace normalised
    schedule.timezone = spec.timezone
    # Its steps as a job stores them: each tick's job copies them (jobs.services.job_insert_ticks).
    template = {k: v for k, v in asdict(spec.job).items() if k != "run_at"}
    schedule.job_template = template | {"steps": job_steps(spec.job.steps)}
    schedule.job_hosts = steps_hosts(spec.job.steps)
    schedule.overlap = spec.overlap
    schedule.misfire = spec.misfire
    schedule.misfire_window = spec.misfire_window
    schedule.misfire_cap = spec.misfire_cap
    schedule.start_at = spec.start_at
    schedule.end_at = spec.end_at
    schedule.enabled = spec.enabled
    schedule.jitter = spec.jitter
    schedule.pause_note = spec.pause_note


def _first_fire(ticks: cron.Ticks, *, since: datetime, schedule: Schedule) -> datetime | None:
    """The first tick at or after ``since`` and start_at, or None if it falls after end_at."""
    if schedule.start_at is not None:
        since = max(since, schedule.start_at)
    tick = ticks.at_or_after(since)
    if tick is None or (schedule.end_at is not None and tick.at > schedule.end_at):
        return None
    return tick.at


def _locked(schedule_id: UUID) -> Schedule:
    # The row lock makes this change wait for a sweep that is firing the schedule, and a sweep
    # skip the schedule (SKIP LOCKED) until this change commits: it then fires by the new row.
    try:
        return Schedule.objects.select_for_update().get(id=schedule_id)
    except Schedule.DoesNotExist:
        raise NotFound("SCHEDULES.NOT_FOUND", f"no schedule {schedule_id}") from None


def _save(schedule: Schedule, now: datetime) -> None:
    """Save a locked, fresh schedule; tell the dispatchers if it may fire sooner than before."""
    schedule.version += 1
    schedule.updated_at = now
    schedule.save()
    if schedule.next_fire_at is not None:
        _notify_sweepers()


def _notify_sweepers() -> None:
    # Delivered at commit: a dispatcher woken by it sees the new next_fire_at.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [SCHEDULES_CHANNEL])


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        if "one_schedule_name_per_owner" not in str(exc):
            raise
        raise Conflict(
            "SCHEDULES.NAME_TAKEN", f"you already have a schedule named {name!r}", {"name": name}
        ) from None
