"""Firing schedules: the ticks that are due become jobs, once each (DESIGN §6, docs/schedules.md).

:func:`schedules_fire_due` is the one firing path. The dispatchers run it (a chore of
``jobs.dispatcher``) at every schedule's ``next_fire_at``, and it fires every due schedule in
batches, set-based: one statement claims a batch of due schedules (``FOR UPDATE SKIP LOCKED``, so
several dispatchers share the work and never fire one tick twice), one ``INSERT … SELECT`` makes
their jobs, one UPDATE advances their ``next_fire_at``, one INSERT records the firings. What each
tick does is decided by ``jobs.schedules.policies``: the misfire policy (computed once per
distinct cron, zone and ``next_fire_at``) says which due ticks fire, the overlap policy, from the
jobs table, what each firing does. The job insert is ``ON CONFLICT (schedule, scheduled_for) DO
NOTHING`` besides: one job per tick whatever happens. :func:`schedule_trigger` (fire now, from
the API or the admin) fires one schedule through the same decisions and writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

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
)
from jobs.services import TemplatedJob, job_insert_from_templates, jobs_cancel

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
    """What one sweep fired: each schedule's firings, and how long it took."""

    fired: dict[UUID, FireResult] = field(default_factory=dict)
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # this process's CPU (PostgreSQL's is not in it)

    def of(self, schedule_id: UUID) -> FireResult:
        return self.fired.get(schedule_id, FireResult())

    @property
    def jobs(self) -> int:
        return sum(len(result.job_ids) for result in self.fired.values())


# --- the sweep ---------------------------------------------------------------------------------


def schedules_fire_due(
    *, now: datetime | None = None, batch_size: int | None = None
) -> SweepResult:
    """Fire every schedule whose ``next_fire_at`` has come, and every buffered tick whose
    blocking job has ended, ``batch_size`` schedules per transaction.

    Safe to run in any number of processes at once: each batch claims its schedules with
    ``FOR UPDATE SKIP LOCKED`` and advances their ``next_fire_at`` before it commits, so a tick
    is claimed once. A schedule locked by an edit is skipped and fires at the next sweep (the
    edit keeps a due tick due). Jobs are stored PENDING and the dispatchers woken at each commit.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.JOBPLATFORM_SCHEDULE_BATCH
    began, cpu = time.monotonic(), time.process_time()
    fired: dict[UUID, FireResult] = {}
    while True:
        with transaction.atomic():
            claimed = _claim(now=now, limit=batch_size)
            fired |= _fire_batch(claimed, now=now)
        # A short batch: nothing else is due, or the rest is locked by another sweeper (which
        # fires it) or by an edit (the next sweep fires it).
        if len(claimed) < batch_size:
            break
    result = SweepResult(
        fired=fired, seconds=time.monotonic() - began, cpu_seconds=time.process_time() - cpu
    )
    if fired:
        logger.info(
            "fired %d schedules (%d jobs) in %.0f ms, %.0f ms CPU",
            len(fired),
            result.jobs,
            1000 * result.seconds,
            1000 * result.cpu_seconds,
        )
    return result


_DUE_COLUMNS = (
    "id, owner_id, job_template::text, cron, timezone, overlap, misfire, misfire_window, "
    "misfire_cap, jitter, end_at, next_fire_at, buffered_for"
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
    SELECT id FROM jobs_schedule s
    WHERE enabled AND buffered_for IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM jobs_job
          WHERE schedule_id = s.id AND status IN {_ACTIVE}  -- the partial job_schedule_active
      )
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
SELECT {_DUE_COLUMNS} FROM jobs_schedule
WHERE id IN (SELECT id FROM due UNION SELECT id FROM unblocked)
"""


def _claim(*, now: datetime, limit: int) -> list[Claimed]:
    """Lock up to ``limit`` due schedules (and as many unblocked buffered ones) until commit."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"now": now, "limit": limit})
        return [Claimed(*row) for row in cursor.fetchall()]


def _fire_batch(claimed: Sequence[Claimed], *, now: datetime) -> dict[UUID, FireResult]:
    """Fire the claimed schedules (their row locks are held): decide, write, advance."""
    if not claimed:
        return {}
    planned = _overlap_plans(claimed, _misfire_plans(claimed, now=now), now=now)
    fired = _write([decision for _, decision in planned], now=now, manual=False)
    _advance([(d.schedule.id, plan.next_fire_at, d.buffered_for) for plan, d in planned], now=now)
    return fired


def _overlap_plans(
    claimed: Sequence[Claimed], plans: dict[UUID, MisfirePlan], *, now: datetime
) -> list[tuple[MisfirePlan, OverlapPlan]]:
    """What each claimed schedule's firing does, with the jobs table read once for the batch.

    A schedule without a misfire plan has only a buffered tick (claimed because the job it
    waited for had ended): it fires unless another of its jobs has started meanwhile.
    """
    # Only these look at their unfinished jobs: thousands of ``allow`` schedules cost nothing.
    watched = [s.id for s in claimed if s.overlap != Schedule.Overlap.ALLOW or s.buffered_for]
    active = _active_jobs(watched)
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


def _misfire_plans(claimed: Iterable[Claimed], *, now: datetime) -> dict[UUID, MisfirePlan]:
    """The misfire plan of each due schedule, computed once per distinct set of inputs: the
    schedules of one cron, zone and next tick (thousands of ``* * * * *``) share one."""
    grace = settings.JOBPLATFORM_SCHEDULE_MISFIRE_GRACE
    computed: dict[tuple[Any, ...], MisfirePlan] = {}
    plans: dict[UUID, MisfirePlan] = {}
    for due in claimed:
        if due.next_fire_at is None or due.next_fire_at > now:
            continue
        key = (due.cron, due.timezone, due.next_fire_at, due.end_at, due.misfire)
        if due.misfire == Schedule.Misfire.RUN_ALL:
            key += (due.misfire_window, due.misfire_cap)
        if key not in computed:
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
        plans[due.id] = computed[key]
    return plans


def _active_jobs(schedule_ids: list[UUID]) -> dict[UUID, list[UUID]]:
    """Each schedule's unfinished jobs, oldest first (the partial index job_schedule_active)."""
    if not schedule_ids:
        return {}
    active: dict[UUID, list[UUID]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT schedule_id, id FROM jobs_job WHERE schedule_id = ANY(%s)"
            f" AND status IN {_ACTIVE} ORDER BY created_at",
            [schedule_ids],
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
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schedule_id, scheduled_for FROM jobs_job WHERE (schedule_id, scheduled_for)"
            " IN (SELECT * FROM unnest(%s::uuid[], %s::timestamptz[]))",
            [[p[0] for p in pairs], [p[1] for p in pairs]],
        )
        for schedule_id, tick in cursor.fetchall():
            taken.setdefault(schedule_id, set()).add(tick)
    return taken


_ADVANCE_SQL = """
UPDATE jobs_schedule AS s
SET next_fire_at = v.next_fire_at, buffered_for = v.buffered_for,
    last_fired_at = %(now)s, updated_at = %(now)s, version = s.version + 1
FROM unnest(%(ids)s::uuid[], %(next)s::timestamptz[], %(buffered)s::timestamptz[])
    AS v(id, next_fire_at, buffered_for)
WHERE s.id = v.id
"""


def _advance(rows: list[tuple[UUID, datetime | None, datetime | None]], *, now: datetime) -> None:
    """Move each fired schedule to its next tick, in one UPDATE (the rows are locked)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _ADVANCE_SQL,
            {
                "ids": [r[0] for r in rows],
                "next": [r[1] for r in rows],
                "buffered": [r[2] for r in rows],
                "now": now,
            },
        )


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
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_DUE_COLUMNS} FROM jobs_schedule WHERE id = %s", [schedule_id])
            due = Claimed(*cursor.fetchone())
        plan = MisfirePlan(fire=((now, 0),), skipped=None, next_fire_at=due.next_fire_at)
        [(_, decision)] = _overlap_plans([due], {due.id: plan}, now=now)
        result = _write([decision], now=now, manual=True)[due.id]
        if decision.buffered_for != due.buffered_for:
            Schedule.objects.filter(id=due.id).update(buffered_for=decision.buffered_for)
    if result.fired[-1].outcome == Outcome.SKIPPED_OVERLAP:
        raise Conflict(
            "SCHEDULES.OVERLAP_SKIPPED",
            f"overlap is {due.overlap} and an earlier job of the schedule is unfinished",
            {"overlap": due.overlap},
        )
    return result


# --- the writes ----------------------------------------------------------------------------------


def _write(
    decisions: Sequence[OverlapPlan], *, now: datetime, manual: bool
) -> dict[UUID, FireResult]:
    """Store what ``decisions`` decided, set-based: the jobs (one INSERT … SELECT), the
    cancellations (one UPDATE), the firings (one INSERT), and prune old firings (one DELETE)."""
    templates: dict[str, int] = {}
    jobs: list[TemplatedJob] = []
    for decision in decisions:
        index = templates.setdefault(decision.schedule.template, len(templates))
        jobs += [replace(r.job, template=index) for r in decision.ticks if r.job is not None]
    made = job_insert_from_templates(templates=list(templates), jobs=jobs, now=timezone.now())
    # After the insert: a job made just now (for a buffered tick) may be one cancel_previous ends.
    wanted = [job_id for d in decisions for job_id in d.cancel]
    cancelled = set(jobs_cancel(job_ids=wanted)) if wanted else set()

    fired: dict[UUID, FireResult] = {}
    firings: list[tuple[Any, ...]] = []
    for decision in decisions:
        results = []
        for r in decision.ticks:
            job_id = r.job.id if r.job is not None and r.job.id in made else None
            outcome = (
                Outcome.DUPLICATE if r.outcome == Outcome.CREATED and not job_id else r.outcome
            )
            ended = [str(j) for j in r.cancels if j in cancelled]
            firings.append(
                (decision.schedule.id, r.tick, outcome, job_id, r.missed, json.dumps(ended))
            )
            results.append(Fired(r.tick, outcome, job_id))
        fired[decision.schedule.id] = FireResult(fired=tuple(results))
    _record_firings(firings, now=now, manual=manual)
    _prune_firings([d.schedule.id for d in decisions])
    return fired


_FIRINGS_SQL = """
INSERT INTO jobs_schedulefiring
    (schedule_id, scheduled_for, outcome, job_id, missed, cancelled, fired_at, manual)
SELECT schedule_id, scheduled_for, outcome, job_id, missed, cancelled, %(now)s, %(manual)s
FROM unnest(
    %(schedules)s::uuid[], %(ticks)s::timestamptz[], %(outcomes)s::text[], %(jobs)s::uuid[],
    %(missed)s::integer[], %(cancelled)s::jsonb[]
) WITH ORDINALITY AS f(schedule_id, scheduled_for, outcome, job_id, missed, cancelled, position)
ORDER BY position  -- ids in decision order: a schedule's latest firing has the highest id
"""


def _record_firings(rows: list[tuple[Any, ...]], *, now: datetime, manual: bool) -> None:
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            _FIRINGS_SQL,
            {
                "schedules": list(columns[0]),
                "ticks": list(columns[1]),
                "outcomes": [str(o) for o in columns[2]],
                "jobs": list(columns[3]),
                "missed": list(columns[4]),
                "cancelled": list(columns[5]),
                "now": now,
                "manual": manual,
            },
        )


_PRUNE_FIRINGS_SQL = """
DELETE FROM jobs_schedulefiring AS f
USING unnest(%(schedules)s::uuid[]) AS s(id)
WHERE f.schedule_id = s.id AND f.id < (
    -- The oldest firing kept, from the index firing_schedule_recent.
    SELECT id FROM jobs_schedulefiring WHERE schedule_id = s.id
    ORDER BY id DESC OFFSET %(keep)s - 1 LIMIT 1
)
"""


def _prune_firings(schedule_ids: list[UUID]) -> None:
    if not schedule_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE_FIRINGS_SQL, {"schedules": schedule_ids, "keep": FIRINGS_KEPT})
