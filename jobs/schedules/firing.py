"""Firing schedules: the ticks that are due become jobs, once each (DESIGN §6, docs/schedules.md).

:func:`schedules_fire_due` is the one firing path. The dispatchers run it (a chore of
``jobs.dispatcher``) at every schedule's ``next_fire_at``, and it fires every due schedule in
batches, set-based: one statement claims a batch of due schedules (``FOR UPDATE SKIP LOCKED``, so
several dispatchers share the work and never fire one tick twice), one ``INSERT … SELECT`` makes
their jobs, one INSERT records the firings, one UPDATE advances their ``next_fire_at``; once every
batch has committed, one DELETE per batch prunes old firings. What each tick does is decided by
``jobs.schedules.policies``: the
misfire policy (computed once per distinct cron, zone and ``next_fire_at``) says which due ticks
fire, the overlap policy, from the jobs table, what each firing does. The job insert is
``ON CONFLICT (schedule, scheduled_for) DO NOTHING`` besides: one job per tick whatever happens.
:func:`schedule_trigger` (fire now, from the API or the admin) fires one schedule through the
same decisions and writes.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from jobplatform.db import prepared_cursor
from jobplatform.errors import Conflict, NotFound
from jobs import lifecycle
from jobs.lifecycle import sql_in
from jobs.schedules import cron
from jobs.schedules.models import Schedule, ScheduleFiring
from jobs.schedules.policies import (
    Claimed,
    MisfirePlan,
    OverlapPlan,
    misfire_plan,
    overlap_plan,
    tick_run_at,
)
from jobs.services import job_insert_ticks, jobs_cancel

logger = logging.getLogger("jobplatform.schedules")

FIRINGS_KEPT = 100  # firing rows kept per schedule; older ones are pruned as new ones come

Outcome = ScheduleFiring.Outcome


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
class SweepResult:
    """What one sweep recorded, firing by firing, and how long it took."""

    # (schedule, tick, outcome, job) of each firing recorded, in order
    firings: tuple[tuple[UUID, datetime, str, UUID | None], ...] = ()
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # this process's CPU (PostgreSQL's is not in it)

    @cached_property
    def fired(self) -> dict[UUID, FireResult]:
        """Each fired schedule's firings, in order."""
        by_schedule: dict[UUID, list[Fired]] = {}
        for schedule_id, tick, outcome, job_id in self.firings:
            by_schedule.setdefault(schedule_id, []).append(Fired(tick, outcome, job_id))
        return {key: FireResult(tuple(value)) for key, value in by_schedule.items()}

    def of(self, schedule_id: UUID) -> FireResult:
        return self.fired.get(schedule_id, FireResult())

    @property
    def jobs(self) -> int:
        return sum(job_id is not None for *_, job_id in self.firings)


# --- the sweep ---------------------------------------------------------------------------------


def schedules_fire_due(
    *, now: datetime | None = None, batch_size: int | None = None, sessions: int | None = None
) -> SweepResult:
    """Fire every schedule whose ``next_fire_at`` has come, and every buffered tick whose
    blocking job has ended, ``batch_size`` schedules per transaction.

    Safe to run in any number of processes at once: each batch claims its schedules with
    ``FOR UPDATE SKIP LOCKED`` and advances their ``next_fire_at`` before it commits, so a tick
    is claimed once. A schedule locked by an edit is skipped and fires at the next sweep (the
    edit keeps a due tick due). Jobs are stored PENDING and the dispatchers woken at each commit.

    When the first batch is full (more is due), up to ``sessions`` - 1 more database sessions
    (threads) sweep beside this one, as more dispatchers would: while one session's batch is in
    PostgreSQL, another's is decided in Python. Not inside a caller's transaction, which they
    could not see into.
    """
    with _collector_paused():
        return _sweep(
            now=now or timezone.now(),
            batch_size=batch_size or settings.JOBPLATFORM_SCHEDULE_BATCH,
            sessions=sessions or settings.JOBPLATFORM_SCHEDULE_SESSIONS,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the length of a sweep, as it was after.

    A sweep allocates tens of thousands of short-lived objects (rows, tuples, lists) and makes
    no reference cycles: refcounting frees them all. But their number triggered the collector,
    and its full collections traverse every object of the process (Django's included): a third
    of a sweep's Python CPU (docs/performance.md#schedules-at-scale).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:  # of two sweeps at once, the one that turned it off turns it on
            gc.enable()


def _sweep(*, now: datetime, batch_size: int, sessions: int) -> SweepResult:
    began, cpu = time.monotonic(), time.process_time()
    sweep = _Sweep(now=now, batch_size=batch_size)
    if sweep.batch():  # full: more may be due
        helpers = [
            _Sweep(now=now, batch_size=batch_size)
            for _ in range(sessions - 1 if not connection.in_atomic_block else 0)
        ]
        with ThreadPoolExecutor(max(1, len(helpers)), thread_name_prefix="sweep") as pool:
            running = [pool.submit(_sweep_in_own_session, helper) for helper in helpers]
            sweep.run()
            for future in running:
                future.result()  # a helper's error is the sweep's
        for helper in helpers:
            sweep.firings += helper.firings
            sweep.schedules += helper.schedules
    firings = sweep.firings
    # Once every job is made: the pruning takes no time from the ticks.
    fired = list(dict.fromkeys(schedule_id for schedule_id, *_ in firings))
    for start in range(0, len(fired), batch_size):
        _prune_firings(fired[start : start + batch_size])
    result = SweepResult(
        tuple(firings), seconds=time.monotonic() - began, cpu_seconds=time.process_time() - cpu
    )
    if firings:
        logger.info(
            "fired %d schedules (%d jobs) in %.0f ms, %.0f ms CPU",
            sweep.schedules,
            result.jobs,
            1000 * result.seconds,
            1000 * result.cpu_seconds,
        )
    return result


class _Sweep:
    """One session's part of a sweep: batch after batch until a short one."""

    def __init__(self, *, now: datetime, batch_size: int) -> None:
        self.now, self.batch_size = now, batch_size
        self.firings: list[tuple[UUID, datetime, str, UUID | None]] = []
        self.schedules = 0
        # The misfire plans, shared by the session's batches.
        self.plans: dict[tuple[Any, ...], MisfirePlan | str] = {}

    def batch(self) -> bool:
        """Fire one batch in its own transaction; whether it was full (more may be due)."""
        with transaction.atomic():
            claimed = _claim(now=self.now, limit=self.batch_size)
            self.firings += _fire_batch(claimed, now=self.now, plans=self.plans)
        self.schedules += len(claimed)
        return len(claimed) == self.batch_size

    def run(self) -> None:
        # A short batch: nothing else is due, or the rest is locked by another sweeper (which
        # fires it) or by an edit (the next sweep fires it).
        while self.batch():
            pass


def _sweep_in_own_session(sweep: _Sweep) -> None:
    """``sweep.run()`` in a helper thread, on the thread's own connection, closed after."""
    try:
        sweep.run()
    finally:
        connection.close()


_CLAIMED_COLUMNS = (
    "id, cron, timezone, overlap, misfire, misfire_window, misfire_cap, jitter, end_at, "
    "next_fire_at, buffered_for"
)
_ACTIVE = sql_in(lifecycle.ACTIVE)
_CLAIM_SQL = f"""
WITH due AS (
    SELECT id FROM jobs_schedule
    WHERE enabled AND next_fire_at <= %(now)s
    ORDER BY next_fire_at  -- the partial index schedule_due
    LIMIT %(limit)s
    -- Several sweepers share the due schedules: each skips the rows another has claimed, and
    -- holds its own until they are fired and advanced (commit), so no tick is claimed twice.
    FOR UPDATE SKIP LOCKED
), unblocked AS (
    -- buffer_one: a tick waits in buffered_for until the schedule's unfinished jobs have ended.
    SELECT id FROM jobs_schedule AS s
    WHERE enabled AND buffered_for IS NOT NULL  -- the partial index schedule_buffered
      AND NOT EXISTS (
          SELECT FROM jobs_job
          WHERE schedule_id = s.id AND status IN {_ACTIVE}  -- the partial job_schedule_active
      )
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
SELECT {_CLAIMED_COLUMNS} FROM jobs_schedule
-- By primary key: a join would read the whole table to find the batch.
WHERE id = ANY(ARRAY(SELECT id FROM due UNION SELECT id FROM unblocked))
"""


def _claim(*, now: datetime, limit: int) -> list[Claimed]:
    """Lock up to ``limit`` due schedules (and as many unblocked buffered ones) until commit."""
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"now": now, "limit": limit}, prepare=True, binary=True)
        return [Claimed(*row) for row in cursor.fetchall()]


def _fire_batch(
    claimed: Sequence[Claimed], *, now: datetime, plans: dict[tuple[Any, ...], MisfirePlan | str]
) -> list[tuple[UUID, datetime, str, UUID | None]]:
    """Fire the claimed schedules (their row locks are held): decide, write, advance.

    Most schedules fire one tick with overlap ``allow``: their firing is one job and one record
    whatever their jobs do, so they are written straight from their misfire plan, a few list
    appends each. The others go through the overlap policy, with their unfinished jobs read
    once for the batch.
    """
    if not claimed:
        return []
    plans_of, broken = _misfire_plans(claimed, now=now, computed=plans)
    if broken:
        _pause_broken(broken, now=now)
    batch = _Batch(now=now)
    involved = []
    for schedule in claimed:
        if schedule.id in broken:
            continue
        plan = plans_of.get(schedule.id)
        if (
            plan is not None
            and schedule.overlap == Schedule.Overlap.ALLOW
            and schedule.buffered_for is None
            and len(plan.fire) <= 1
        ):
            # What overlap_plan decides for it, without the call: the skipped ticks, the tick.
            if plan.skipped is not None:
                batch.record(schedule.id, plan.skipped[0], Outcome.SKIPPED_MISFIRE, plan.skipped[1])
            for tick, missed in plan.fire:
                batch.record(schedule.id, tick, Outcome.CREATED, missed)
                run_at = tick_run_at(tick, now=now, jitter=schedule.jitter)
                batch.job(schedule.id, tick, run_at, job_id=None)
            batch.advance(schedule.id, plan.next_fire_at, None)
        else:
            involved.append(schedule)
    for plan, decision in _overlap_plans(involved, plans_of, now=now):
        batch.add(decision)
        batch.advance(decision.schedule.id, plan.next_fire_at, decision.buffered_for)
    return batch.write(manual=False)


def _misfire_plans(
    claimed: Iterable[Claimed],
    *,
    now: datetime,
    computed: dict[tuple[Any, ...], MisfirePlan | str],
) -> tuple[dict[UUID, MisfirePlan], dict[UUID, str]]:
    """The misfire plan of each due schedule, computed once per distinct set of inputs (kept in
    ``computed``): the schedules of one cron, zone and next tick (thousands of ``* * * * *``)
    share one. Also the schedules whose ticks cannot be computed, with why."""
    grace = settings.JOBPLATFORM_SCHEDULE_MISFIRE_GRACE
    plans: dict[UUID, MisfirePlan] = {}
    broken: dict[UUID, str] = {}
    for due in claimed:
        if due.next_fire_at is None or due.next_fire_at > now:
            continue
        key: tuple[Any, ...] = (due.cron, due.timezone, due.next_fire_at, due.end_at, due.misfire)
        if due.misfire == Schedule.Misfire.RUN_ALL:
            key += (due.misfire_window, due.misfire_cap)
        if key not in computed:
            try:
                computed[key] = misfire_plan(
                    ticks=cron.ticks(due.cron, due.timezone),
                    first=due.next_fire_at,
                    now=now,
                    end_at=due.end_at,
                    policy=due.misfire,
                    window=due.misfire_window,
                    cap=due.misfire_cap,
                    grace=grace,
                )
            # A row no edit could store (written by hand, or a zone gone from tzdata after an
            # upgrade): it must not fail the batch, and with it every other schedule's tick.
            except (ValueError, KeyError, OverflowError) as exc:
                computed[key] = f"{type(exc).__name__}: {exc}"
        plan = computed[key]
        if isinstance(plan, str):
            broken[due.id] = plan
        else:
            plans[due.id] = plan
    return plans, broken


def _pause_broken(broken: dict[UUID, str], *, now: datetime) -> None:
    """Pause the schedules whose ticks cannot be computed, saying why (the admin and the API
    show it); an operator fixes and resumes them."""
    for schedule_id, why in broken.items():
        logger.error("schedule %s paused: its ticks cannot be computed (%s)", schedule_id, why)
        Schedule.objects.filter(id=schedule_id).update(
            enabled=False,
            next_fire_at=None,
            paused_at=now,
            pause_note=f"paused by the dispatcher: its ticks cannot be computed ({why})",
            updated_at=now,
            version=F("version") + 1,
        )


def _overlap_plans(
    claimed: Sequence[Claimed], plans: dict[UUID, MisfirePlan], *, now: datetime
) -> list[tuple[MisfirePlan, OverlapPlan]]:
    """What each claimed schedule's firing does, with the jobs table read once for all of them.

    A schedule without a misfire plan has only a buffered tick (claimed because the job it
    waited for had ended): it fires unless another of its jobs has started meanwhile.
    """
    if not claimed:
        return []
    active = _active_jobs([s.id for s in claimed])
    taken = _ticks_with_jobs(claimed, plans)
    planned = []
    for schedule in claimed:
        plan = plans.get(schedule.id)
        if plan is None:
            if active.get(schedule.id):
                continue  # the buffered tick waits on
            plan = MisfirePlan(fire=(), skipped=None, next_fire_at=schedule.next_fire_at)
        decision = overlap_plan(
            schedule,
            plan.fire,
            plan.skipped,
            active=list(active.get(schedule.id, ())),
            taken=taken.get(schedule.id, set()),
            now=now,
        )
        planned.append((plan, decision))
    return planned


def _active_jobs(schedule_ids: list[UUID]) -> dict[UUID, list[UUID]]:
    """Each schedule's unfinished jobs, oldest first (the partial index job_schedule_active)."""
    active: dict[UUID, list[UUID]] = {}
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT schedule_id, id FROM jobs_job WHERE schedule_id = ANY(%s)"
            f" AND status IN {_ACTIVE} ORDER BY created_at",
            [schedule_ids],
            prepare=True,
        )
        for schedule_id, job_id in cursor.fetchall():
            active.setdefault(schedule_id, []).append(job_id)
    return active


def _ticks_with_jobs(
    claimed: Iterable[Claimed], plans: dict[UUID, MisfirePlan]
) -> dict[UUID, set[datetime]]:
    """Which ticks already have their job, for the schedules that may make more than one job in
    this firing: a tick that turns out a duplicate makes no job for the overlap policy to see.

    (A firing that makes one job needs no look: its insert skips a duplicate and that is all.)
    """
    pairs: list[tuple[UUID, datetime]] = []
    for due in claimed:
        ticks = [tick for tick, _ in plans[due.id].fire] if due.id in plans else []
        if due.buffered_for is not None:
            ticks.append(due.buffered_for)
        if len(ticks) > 1:
            pairs += [(due.id, tick) for tick in ticks]
    if not pairs:
        return {}
    taken: dict[UUID, set[datetime]] = {}
    with prepared_cursor() as cursor:
        cursor.execute(
            "SELECT schedule_id, scheduled_for FROM jobs_job WHERE (schedule_id, scheduled_for)"
            " IN (SELECT * FROM unnest(%s::uuid[], %s::timestamptz[]))",
            [[p[0] for p in pairs], [p[1] for p in pairs]],
        )
        for schedule_id, tick in cursor.fetchall():
            taken.setdefault(schedule_id, set()).add(tick)
    return taken


# --- manual trigger ------------------------------------------------------------------------------


def schedule_trigger(*, schedule_id: UUID, now: datetime | None = None) -> FireResult:
    """Fire one tick now, outside the cron expression, under the overlap policy; paused and
    ended schedules too. The tick is ``now``: its job's scheduled_for is the trigger instant.

    When the overlap policy skips the tick, the skip is recorded and Conflict
    SCHEDULES.OVERLAP_SKIPPED raised after commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # The schedule's row lock, as a sweep takes it, so that the overlap check below sees the
        # sweep's jobs and the sweep sees this one's.
        if not Schedule.objects.filter(id=schedule_id).update(
            version=F("version") + 1, updated_at=now
        ):
            raise NotFound("SCHEDULES.NOT_FOUND", f"no schedule {schedule_id}")
        with prepared_cursor() as cursor:
            cursor.execute(
                f"SELECT {_CLAIMED_COLUMNS} FROM jobs_schedule WHERE id = %s", [schedule_id]
            )
            schedule = Claimed(*cursor.fetchone())  # type: ignore[misc]
        plan = MisfirePlan(fire=((now, 0),), skipped=None, next_fire_at=schedule.next_fire_at)
        [(_, decision)] = _overlap_plans([schedule], {schedule.id: plan}, now=now)
        batch = _Batch(now=now)
        batch.add(decision)
        fired = [Fired(tick, outcome, job) for _, tick, outcome, job in batch.write(manual=True)]
        _prune_firings([schedule.id])
        if decision.buffered_for != schedule.buffered_for:
            Schedule.objects.filter(id=schedule.id).update(buffered_for=decision.buffered_for)
    if fired[-1].outcome == Outcome.SKIPPED_OVERLAP:
        raise Conflict(
            "SCHEDULES.OVERLAP_SKIPPED",
            f"overlap is {schedule.overlap} and an earlier job of the schedule is unfinished",
            {"overlap": schedule.overlap},
        )
    return FireResult(tuple(fired))


# --- the writes ----------------------------------------------------------------------------------


class _Batch:
    """What a batch of firings writes, column by column: each list becomes one array parameter
    of one statement, whatever the number of schedules."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        # The jobs: job_insert_ticks's columns.
        self.job_ids: list[UUID | None] = []
        self.job_schedules: list[UUID] = []
        self.job_ticks: list[datetime] = []
        self.job_run_at: list[datetime] = []
        # The firings, in order; a CREATED one's job is looked up by (schedule, tick).
        self.firings: list[tuple[UUID, datetime, str, int, tuple[UUID, ...]]] = []
        self.cancel: list[UUID] = []
        # The schedules fired by the sweep: (id, next_fire_at, buffered_for).
        self.advanced: list[tuple[UUID, datetime | None, datetime | None]] = []

    def job(self, schedule_id: UUID, tick: datetime, run_at: datetime, job_id: UUID | None) -> None:
        self.job_ids.append(job_id)
        self.job_schedules.append(schedule_id)
        self.job_ticks.append(tick)
        self.job_run_at.append(run_at)

    def record(
        self,
        schedule_id: UUID,
        tick: datetime,
        outcome: str,
        missed: int,
        *,
        cancels: tuple[UUID, ...] = (),
    ) -> None:
        self.firings.append((schedule_id, tick, outcome, missed, cancels))

    def add(self, decision: OverlapPlan) -> None:
        schedule_id = decision.schedule.id
        for t in decision.ticks:
            self.record(schedule_id, t.tick, t.outcome, t.missed, cancels=t.cancels)
            if t.job_id is not None and t.run_at is not None:
                self.job(schedule_id, t.tick, t.run_at, t.job_id)
        self.cancel += decision.cancel

    def advance(
        self, schedule_id: UUID, next_fire_at: datetime | None, buffered_for: datetime | None
    ) -> None:
        self.advanced.append((schedule_id, next_fire_at, buffered_for))

    def write(self, *, manual: bool) -> list[tuple[UUID, datetime, str, UUID | None]]:
        """The jobs (one INSERT … SELECT), the cancellations of cancel_previous (one UPDATE),
        the firings (one INSERT) and the schedules' next ticks (one UPDATE). Returns each firing
        as (schedule, tick, outcome, job)."""
        made = (
            job_insert_ticks(
                schedule_ids=self.job_schedules,
                ticks=self.job_ticks,
                run_at=self.job_run_at,
                ids=self.job_ids,
                now=timezone.now(),
            )
            if self.job_schedules
            else {}
        )
        # After the insert: a job made just now (for a buffered tick) may be one cancel_previous
        # ends, as the firing that makes it and then the next one did before the sweep.
        # The platform acts (no actor): the audit note names the policy, the firing the tick.
        note = "a schedule's overlap policy cancel_previous"
        cancelled = (
            set(jobs_cancel(job_ids=self.cancel, actor=None, note=note)) if self.cancel else set()
        )
        recorded: list[tuple[UUID, datetime, str, UUID | None]] = []
        ended: list[str | None] = []
        for schedule_id, tick, outcome, _, cancels in self.firings:
            job_id = made.get((schedule_id, tick)) if outcome == Outcome.CREATED else None
            if outcome == Outcome.CREATED and job_id is None:
                outcome = Outcome.DUPLICATE  # the tick had its job already
            recorded.append((schedule_id, tick, outcome, job_id))
            ended.append(
                json.dumps([str(j) for j in cancels if j in cancelled]) if cancels else None
            )
        self._record(recorded, ended, manual=manual)
        self._advance()
        return recorded

    def _record(
        self,
        recorded: list[tuple[UUID, datetime, str, UUID | None]],
        ended: list[str | None],
        *,
        manual: bool,
    ) -> None:
        if not recorded:
            return
        schedules, ticks, outcomes, jobs = (list(c) for c in zip(*recorded, strict=True))
        params = {
            "schedules": schedules,
            "ticks": ticks,
            "outcomes": [str(o) for o in outcomes],
            "jobs": jobs,
            "missed": [f[3] for f in self.firings],
            "cancelled": ended,
            "fired_at": self.now,
            "manual": manual,
        }
        with prepared_cursor() as cursor:
            cursor.execute(_FIRINGS_SQL, params, prepare=True)

    def _advance(self) -> None:
        """Move each fired schedule to its next tick, in one UPDATE (the rows are locked)."""
        if not self.advanced:
            return
        ids, next_fire_at, buffered_for = (list(c) for c in zip(*self.advanced, strict=True))
        with prepared_cursor() as cursor:
            cursor.execute(
                _ADVANCE_SQL,
                {"ids": ids, "next": next_fire_at, "buffered": buffered_for, "now": self.now},
                prepare=True,
            )


_FIRINGS_SQL = """
INSERT INTO jobs_schedulefiring
    (schedule_id, scheduled_for, outcome, job_id, missed, cancelled, fired_at, manual)
SELECT schedule_id, scheduled_for, outcome, job_id, missed, coalesce(cancelled, '[]'),
    %(fired_at)s, %(manual)s
FROM unnest(
    %(schedules)b::uuid[], %(ticks)b::timestamptz[], %(outcomes)b::text[], %(jobs)b::uuid[],
    %(missed)b::integer[], %(cancelled)s::jsonb[]
) WITH ORDINALITY AS f(schedule_id, scheduled_for, outcome, job_id, missed, cancelled, position)
ORDER BY position  -- ids in decision order: a schedule's latest firing has the highest id
"""
_PRUNE_FIRINGS_SQL = """
DELETE FROM jobs_schedulefiring AS f
USING unnest(%(schedules)b::uuid[]) AS s(id)
WHERE f.schedule_id = s.id AND f.id < (
    -- The oldest firing kept, from the index firing_schedule_recent.
    SELECT id FROM jobs_schedulefiring WHERE schedule_id = s.id
    ORDER BY id DESC OFFSET %(keep)s - 1 LIMIT 1
)
"""
_ADVANCE_SQL = """
UPDATE jobs_schedule AS s
SET next_fire_at = v.next_fire_at, buffered_for = v.buffered_for,
    last_fired_at = %(now)s, updated_at = %(now)s, version = s.version + 1
FROM unnest(%(ids)b::uuid[], %(next)b::timestamptz[], %(buffered)b::timestamptz[])
    AS v(id, next_fire_at, buffered_for)
WHERE s.id = v.id AND s.id = ANY(%(ids)b::uuid[])  -- by primary key, not a hash of the table
"""


def _prune_firings(schedule_ids: list[UUID]) -> None:
    """Keep the latest FIRINGS_KEPT firings of each schedule (one DELETE)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            _PRUNE_FIRINGS_SQL, {"schedules": schedule_ids, "keep": FIRINGS_KEPT}, prepare=True
        )
