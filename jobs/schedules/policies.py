"""What firing a schedule does, decided in Python from what the firing read (no database here):
the misfire policy says which of the due ticks fire, the overlap policy what each one does.

``jobs.schedules.firing`` reads what these need for a whole batch of schedules at once, calls them
(:func:`misfire_plan` once per distinct cron, zone and ``next_fire_at``), and writes what they
decided, set-based. DESIGN §6 and docs/schedules.md say what the policies are.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from uuid import UUID

from jobs.schedules import cron
from jobs.schedules.models import Schedule, ScheduleFiring

MISSED_COUNT_LIMIT = 1000  # missed ticks are counted up to this (a year has 525,600 minutes)

Outcome = ScheduleFiring.Outcome
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Claimed:
    """A schedule a firing holds the row lock of: what the policies need to know of it."""

    id: UUID
    cron: str
    timezone: str
    overlap: str
    misfire: str
    misfire_window: int
    misfire_cap: int
    jitter: int
    end_at: datetime | None
    next_fire_at: datetime | None
    buffered_for: datetime | None


@dataclass(frozen=True)
class MisfirePlan:
    """The misfire policy's verdict on the ticks due since ``next_fire_at``."""

    fire: tuple[tuple[datetime, int], ...]  # (tick, earlier missed ticks it stands for), in order
    skipped: tuple[datetime, int] | None  # the first tick dropped and how many were dropped
    next_fire_at: datetime | None  # the first tick after those, None past end_at


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
    the latest if older, was missed (no dispatcher was sweeping, or the database was down).
    ``skip``: only an on-time tick fires. ``run_once``: one job, for the latest due tick, stands
    for them all (never a burst). ``run_all``: each due tick no older than ``window`` seconds, the
    latest ``cap`` of them, oldest first. Dropped ticks are counted (up to MISSED_COUNT_LIMIT).
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


def tick_run_at(tick: datetime, *, now: datetime, jitter: int, order: int = 0) -> datetime:
    """When a tick's job is due: the tick (or now, for a late tick) plus a random 0 to
    ``jitter`` seconds; ``order`` microseconds keep the ticks of one catch-up released oldest
    first."""
    delay = random.uniform(0, jitter) if jitter else 0.0
    return max(now, tick) + timedelta(seconds=delay, microseconds=order)


@dataclass(frozen=True)
class TickPlan:
    """What one tick does: a ScheduleFiring to record, and the job to make, if it makes one."""

    tick: datetime
    outcome: str  # a ScheduleFiring.Outcome
    missed: int = 0
    job_id: UUID | None = None  # CREATED: the job to make, due at run_at
    run_at: datetime | None = None
    cancels: tuple[UUID, ...] = ()  # the unfinished jobs cancel_previous ends for this tick


@dataclass(frozen=True)
class OverlapPlan:
    """What a firing of one schedule does, tick by tick, in order."""

    schedule: Claimed
    ticks: tuple[TickPlan, ...]
    buffered_for: datetime | None  # the tick left waiting (buffer_one), the schedule's new value
    cancel: tuple[UUID, ...]  # the unfinished jobs cancel_previous ends


def overlap_plan(
    schedule: Claimed,
    ticks: tuple[tuple[datetime, int], ...],
    skipped: tuple[datetime, int] | None,
    *,
    active: list[UUID],
    taken: set[datetime],
    now: datetime,
) -> OverlapPlan:
    """Apply the overlap policy to ``ticks`` (the misfire plan's, and ``skipped``): what each
    does, given the schedule's unfinished jobs (``active``, oldest first; extended with the jobs
    made here) and the ticks that already have a job (``taken``).

    The caller holds the schedule's row lock, so the unfinished jobs it read stay the only ones
    until commit; a job finishing meanwhile is at worst seen as still running.
    """
    records: list[TickPlan] = []
    cancel: list[UUID] = []
    buffered = schedule.buffered_for
    made = 0

    def create(tick: datetime, missed: int, cancels: tuple[UUID, ...] = ()) -> None:
        nonlocal made
        if tick in taken:
            records.append(TickPlan(tick, Outcome.DUPLICATE, missed, cancels=cancels))
            return
        job_id = uuid.uuid4()
        run_at = tick_run_at(tick, now=now, jitter=schedule.jitter, order=made)
        records.append(TickPlan(tick, Outcome.CREATED, missed, job_id, run_at, cancels))
        active.append(job_id)
        made += 1

    if skipped is not None:
        records.append(TickPlan(skipped[0], Outcome.SKIPPED_MISFIRE, skipped[1]))
    if buffered is not None and not active:  # the job the buffered tick waited for has ended
        create(buffered, 0)
        buffered = None
    if schedule.overlap == Schedule.Overlap.CANCEL_PREVIOUS and len(ticks) > 1:
        for tick, missed in ticks[:-1]:  # each would cancel the one before: only the last runs
            records.append(TickPlan(tick, Outcome.SKIPPED_OVERLAP, missed))
        ticks = ticks[-1:]
    for tick, missed in ticks:
        if not active or schedule.overlap == Schedule.Overlap.ALLOW:
            create(tick, missed)
        elif schedule.overlap == Schedule.Overlap.SKIP:
            records.append(TickPlan(tick, Outcome.SKIPPED_OVERLAP, missed))
        elif schedule.overlap == Schedule.Overlap.BUFFER_ONE:
            if buffered is None:
                buffered = tick
                records.append(TickPlan(tick, Outcome.BUFFERED, missed))
            else:  # one is already waiting
                records.append(TickPlan(tick, Outcome.SKIPPED_OVERLAP, missed))
        else:  # cancel_previous
            ended = tuple(active)
            cancel.extend(ended)
            active.clear()
            create(tick, missed, ended)
    return OverlapPlan(schedule, tuple(records), buffered, tuple(cancel))
