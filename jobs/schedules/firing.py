"""Firing schedules: the ticks that are due become jobs, once each (DESIGN §6, docs/schedules.md).

Beat wakes every schedule once a minute (see ``jobs.schedules.services``); :func:`schedule_fire`
decides from the schedule's own ``next_fire_at`` which ticks are due, the misfire policy which of
those fire, and the overlap policy, from the jobs table, what each firing does.

Every write on a schedule bumps ``version``. A firing claims the ticks it read with one UPDATE
conditional on that version, so two beats, or a redelivered message, claim them once; the job
insert is ``ON CONFLICT (schedule, scheduled_for) DO NOTHING`` besides.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from jobplatform.errors import Conflict, NotFound
from jobs import lifecycle
from jobs.models import Job
from jobs.schedules import cron
from jobs.schedules.models import Schedule, ScheduleFiring
from jobs.schedules.services import schedule_sync_beat
from jobs.services import JobSpec, job_insert, job_values, jobs_cancel

FIRINGS_KEPT = 100  # firing rows kept per schedule; older ones are pruned as new ones come
MISSED_COUNT_LIMIT = 1000  # missed ticks are counted up to this (a year has 525,600 minutes)

Outcome = ScheduleFiring.Outcome
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Fired:
    """What a firing decided for one tick."""

    scheduled_for: datetime
    outcome: str  # a ScheduleFiring.Outcome
    job_id: UUID | None = None


@dataclass(frozen=True)
class FireResult:
    fired: tuple[Fired, ...] = ()

    @property
    def job_ids(self) -> list[UUID]:
        return [f.job_id for f in self.fired if f.job_id is not None]


@dataclass(frozen=True)
class MisfirePlan:
    """The misfire policy's verdict on the ticks due since ``next_fire_at``."""

    fire: tuple[tuple[datetime, int], ...]  # (tick, earlier missed ticks it stands for), in order
    skipped: tuple[datetime, int] | None  # the first tick dropped and how many were dropped
    next_fire_at: datetime | None  # the first tick after those, None past end_at


def schedule_fire(*, schedule_id: UUID, now: datetime | None = None) -> FireResult:
    """Fire the schedule's due ticks. Beat calls it every minute; usually nothing is due, and
    that costs one primary-key read.

    The misfire policy decides which due ticks fire (:func:`misfire_plan`), the overlap policy
    what each firing does, from the jobs table under the schedule's row lock. Idempotent: the
    firing claims its ticks by advancing next_fire_at with an UPDATE conditional on the version
    it read, so a second beat or a redelivered message finds them claimed; the job insert
    ignores a (schedule, scheduled_for) that already has its job. Jobs are stored PENDING and
    the dispatchers woken at commit, so nothing is published before it.
    """
    now = now or timezone.now()
    for _ in range(3):  # an edit may change the schedule between the read and the claim
        schedule = (
            Schedule.objects.filter(id=schedule_id, enabled=True)
            .filter(Q(next_fire_at__lte=now) | Q(buffered_for__isnull=False))
            .first()
        )
        if schedule is None:
            return FireResult()
        if schedule.next_fire_at is not None and schedule.next_fire_at <= now:
            plan = misfire_plan(
                ticks=cron.ticks(schedule.cron, schedule.timezone),
                first=schedule.next_fire_at,
                now=now,
                end_at=schedule.end_at,
                policy=schedule.misfire,
                window=schedule.misfire_window,
                cap=schedule.misfire_cap,
                grace=settings.JOBPLATFORM_SCHEDULE_MISFIRE_GRACE,
            )
        elif _active_jobs(schedule.id):
            return FireResult()  # only a buffered tick, and what it waits for is still running
        else:
            plan = MisfirePlan(fire=(), skipped=None, next_fire_at=schedule.next_fire_at)
        with transaction.atomic():
            # The claim. Zero rows: another beat, a redelivery or an edit moved the schedule since
            # it was read. One row: its lock is held until commit, so no other firing of this
            # schedule makes a job while the overlap policy below looks at the unfinished ones.
            claimed = Schedule.objects.filter(id=schedule.id, version=schedule.version).update(
                next_fire_at=plan.next_fire_at,
                last_fired_at=now,
                updated_at=now,
                version=F("version") + 1,
            )
            if not claimed:
                continue
            result = _fire(schedule, plan.fire, plan.skipped, now=now, manual=False)
            if plan.next_fire_at is None:  # past end_at: beat can stop waking it
                schedule.refresh_from_db()
                schedule_sync_beat(schedule, task=schedule.periodic_task)
        return result
    return FireResult()


def schedule_trigger(*, schedule_id: UUID, now: datetime | None = None) -> FireResult:
    """Fire one tick now, outside the cron expression, under the overlap policy; paused and
    ended schedules too. The tick is ``now``: its job's scheduled_for is the trigger instant.

    When the overlap policy skips the tick, the skip is recorded and Conflict
    SCHEDULES.OVERLAP_SKIPPED raised after commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # The same claim as a firing (a version bump), so the overlap check sees beat's jobs.
        if not Schedule.objects.filter(id=schedule_id).update(
            version=F("version") + 1, updated_at=now
        ):
            raise NotFound("SCHEDULES.NOT_FOUND", f"no schedule {schedule_id}")
        schedule = Schedule.objects.get(id=schedule_id)
        result = _fire(schedule, ((now, 0),), None, now=now, manual=True)
    if result.fired[-1].outcome == Outcome.SKIPPED_OVERLAP:
        raise Conflict(
            "SCHEDULES.OVERLAP_SKIPPED",
            f"overlap is {schedule.overlap} and an earlier job of the schedule is unfinished",
            {"overlap": schedule.overlap},
        )
    return result


def misfire_plan(
    *,
    ticks: cron.Ticks,
    first: datetime,
    now: datetime,
    end_at: datetime | None,
    policy: str,
    window: int,
    cap: int,
    grace: float,
) -> MisfirePlan:
    """Which of the ticks due since ``first`` (next_fire_at, at or before now) fire.

    The latest due tick is on time if it is at most ``grace`` seconds old; every earlier one, and
    the latest if older, was missed (beat, the broker or the workers were down). ``skip``: only
    an on-time tick fires. ``run_once``: one job, for the latest due tick, stands for them all
    (never a burst). ``run_all``: each due tick no older than ``window`` seconds, the latest
    ``cap`` of them, oldest first. Dropped ticks are counted (up to MISSED_COUNT_LIMIT).
    """
    until = min(now, end_at) if end_at is not None else now
    last = ticks.last_at_or_before(until)
    latest = last.at if last is not None and last.at >= first else first
    following = ticks.next_after(latest)
    next_fire_at = following.at if following is not None else None
    if next_fire_at is not None and end_at is not None and next_fire_at > end_at:
        next_fire_at = None

    fire: tuple[tuple[datetime, int], ...]
    if policy == Schedule.Misfire.RUN_ALL:
        recent: deque[datetime] = deque(maxlen=cap)
        recent.extend(
            t.at for t in ticks.between(max(first, now - timedelta(seconds=window)), latest)
        )
        fire = tuple((t, 0) for t in recent)
        dropped = _count(ticks, first, recent[0] - _MICROSECOND if recent else latest)
    elif policy == Schedule.Misfire.RUN_ONCE:
        fire = ((latest, _count(ticks, first, latest - _MICROSECOND)),)
        dropped = 0
    else:  # skip
        on_time = latest >= now - timedelta(seconds=grace)
        fire = ((latest, 0),) if on_time else ()
        dropped = _count(ticks, first, latest - _MICROSECOND) + (0 if on_time else 1)
    return MisfirePlan(
        fire=fire, skipped=(first, dropped) if dropped else None, next_fire_at=next_fire_at
    )


def _count(ticks: cron.Ticks, start: datetime, end: datetime) -> int:
    """Ticks in [start, end], counted up to MISSED_COUNT_LIMIT."""
    return sum(1 for _ in islice(ticks.between(start, end), MISSED_COUNT_LIMIT))


def _active_jobs(schedule_id: UUID) -> list[UUID]:
    """The schedule's unfinished jobs, oldest first (the partial index job_schedule_active)."""
    return list(
        Job.objects.filter(schedule_id=schedule_id, status__in=lifecycle.ACTIVE)
        .order_by("created_at")
        .values_list("id", flat=True)
    )


def _fire(
    schedule: Schedule,
    ticks: tuple[tuple[datetime, int], ...],
    skipped: tuple[datetime, int] | None,
    *,
    now: datetime,
    manual: bool,
) -> FireResult:
    """Apply the overlap policy to ``ticks`` and record every decision. The caller holds the
    schedule's row lock (through its claim), so the unfinished jobs read here stay the only ones
    until commit; a job finishing meanwhile is at worst seen as still running."""
    active = _active_jobs(schedule.id)
    buffered = schedule.buffered_for
    records: list[ScheduleFiring] = []

    def record(tick: datetime, outcome: str, job_id: UUID | None = None, **extra: Any) -> None:
        records.append(
            ScheduleFiring(
                schedule_id=schedule.id,
                scheduled_for=tick,
                fired_at=now,
                outcome=outcome,
                job_id=job_id,
                manual=manual,
                **extra,
            )
        )

    def create(tick: datetime, missed: int, cancelled: list[str] | None = None) -> None:
        created = sum(r.outcome == Outcome.CREATED for r in records)
        job_id = _insert_job(schedule, tick, now=now, order=created)
        outcome = Outcome.CREATED if job_id else Outcome.DUPLICATE
        record(tick, outcome, job_id, missed=missed, cancelled=cancelled or [])
        if job_id is not None:
            active.append(job_id)

    if skipped is not None:
        record(skipped[0], Outcome.SKIPPED_MISFIRE, missed=skipped[1])
    if buffered is not None and not active:  # the job the buffered tick waited for has ended
        create(buffered, 0)
        buffered = None
    if schedule.overlap == Schedule.Overlap.CANCEL_PREVIOUS and len(ticks) > 1:
        for tick, missed in ticks[:-1]:  # each would cancel the one before: only the last runs
            record(tick, Outcome.SKIPPED_OVERLAP, missed=missed)
        ticks = ticks[-1:]
    for tick, missed in ticks:
        if not active or schedule.overlap == Schedule.Overlap.ALLOW:
            create(tick, missed)
        elif schedule.overlap == Schedule.Overlap.SKIP:
            record(tick, Outcome.SKIPPED_OVERLAP, missed=missed)
        elif schedule.overlap == Schedule.Overlap.BUFFER_ONE:
            if buffered is None:
                buffered = tick
                record(tick, Outcome.BUFFERED, missed=missed)
            else:  # one is already waiting
                record(tick, Outcome.SKIPPED_OVERLAP, missed=missed)
        else:  # cancel_previous
            cancelled = [str(job_id) for job_id in jobs_cancel(job_ids=active)]
            active.clear()
            create(tick, missed, cancelled)

    if buffered != schedule.buffered_for:
        Schedule.objects.filter(id=schedule.id).update(buffered_for=buffered)
    ScheduleFiring.objects.bulk_create(records)
    _prune_firings(schedule.id)
    return FireResult(fired=tuple(Fired(r.scheduled_for, r.outcome, r.job_id) for r in records))


def _insert_job(schedule: Schedule, tick: datetime, *, now: datetime, order: int) -> UUID | None:
    """Store the tick's PENDING job from the template; None if the tick already had one.

    It is due at the tick (or now, for a late tick) plus the schedule's random jitter; ``order``
    microseconds keep the ticks of one catch-up released oldest first.
    """
    delay = random.uniform(0, schedule.jitter) if schedule.jitter else 0.0
    run_at = max(now, tick) + timedelta(seconds=delay, microseconds=order)
    spec = replace(JobSpec(**schedule.job_template), run_at=run_at)
    values = job_values(
        owner_id=schedule.owner_id, spec=spec, schedule_id=schedule.id, scheduled_for=tick
    )
    inserted = job_insert([values], skip_tick_conflict=True)
    return inserted[0] if inserted else None


_PRUNE_FIRINGS_SQL = """
DELETE FROM jobs_schedulefiring
WHERE schedule_id = %(schedule)s AND id < (
    SELECT id FROM jobs_schedulefiring WHERE schedule_id = %(schedule)s
    ORDER BY id DESC OFFSET %(keep)s - 1 LIMIT 1
)
"""


def _prune_firings(schedule_id: UUID) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE_FIRINGS_SQL, {"schedule": schedule_id, "keep": FIRINGS_KEPT})
