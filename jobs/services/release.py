"""Releasing jobs to the broker: due jobs within their limits, and jobs whose message was lost.

The release is where flow control lives (DESIGN §3, docs/architecture.md#flow-control). It is
one transaction, serialised between dispatchers by an advisory lock so that two of them never
both fill the same room. It reads each served queue's state and jobs in flight, brings back the
parked jobs whose reason passed, walks the lanes of waiting jobs, reads (and locks) the heads
of the due lanes, lets ``jobs.flow.plan_release`` decide, and marks the chosen jobs QUEUED; the
caller publishes them after the commit. Every statement reads through a partial index of
waiting or in-flight rows, so a release costs the same however many finished jobs the table
holds, and one probe per lane however many jobs wait in it.

Each hold reason plugs in the same way: a gate factory in ``GATES`` (in release order), a
parker in ``PARKERS`` and an unparker in ``UNPARKERS`` for its ``Job.hold`` reason: the
concurrency key here, the circuit breaker and the rate limit in ``jobs.services.holds``.
"""

from __future__ import annotations

import contextlib
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.db import prepared_cursor
from jobs import flow, lifecycle
from jobs.lifecycle import sql, sql_in
from jobs.models import Hold, Job
from jobs.services import holds

Cursor = psycopg.Cursor[Any]

# Every dispatcher takes this transaction-level lock before it counts what is in flight, so the
# counts it reads include every release committed before it: two dispatchers never both fill
# one room (a cap, the broker depth, a key). A release holds it for a few milliseconds.
RELEASE_LOCK = zlib.crc32(b"jobplatform.release")
# Once it holds that lock, a release takes at once every table lock it will need (ROW SHARE
# conflicts only with EXCLUSIVE and ACCESS EXCLUSIVE, never with reads and writes of rows),
# waiting at most 200 ms for them: a TRUNCATE or an ALTER TABLE that takes these tables one by
# one, in its own order, would otherwise deadlock with a release that asks for one of them
# later. The release gives way instead, and the dispatcher tries again.
# Its prepared statements run on generic plans: PostgreSQL kept planning them anew at every
# execution (custom plans), which cost it more than running them (the state: 1.9 ms to plan, 0.5
# to run), on the path from a submission to its start. Each reads through its partial index
# whatever its parameters (tests/jobs/test_release.py checks the generic plans too).
_BEGIN_RELEASE_SQL = (
    f"SELECT pg_advisory_xact_lock({RELEASE_LOCK}), set_config('lock_timeout', '200ms', true),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)",
    "LOCK TABLE jobs_job, jobs_queue, jobs_ownerquota IN ROW SHARE MODE",
)

WAITING = sql_in(lifecycle.RELEASE.sources)
IN_FLIGHT = sql_in(lifecycle.IN_FLIGHT)
# When a waiting job is due, as jobs.models.DUE_AT builds it for the indexes job_ready and
# job_key_waiting: PostgreSQL uses an expression index only for the same expression.
DUE = f"(CASE WHEN status = {sql(Job.Status.RETRYING)} THEN next_attempt_at ELSE run_at END)"
KEY_PARKED = sql(Hold.CONCURRENCY_KEY)  # a hold reason is a plain word, as a state is
NOT_PARKED = "''"  # Hold.NONE
# Jobs of a full key parked per release besides those the plan refused: enough to clear a lane
# of them quickly, bounded so that one release stays short.
PARK_BATCH = 1000


@contextmanager
def _release_transaction(cursor: Cursor) -> Iterator[None]:
    """The release's transaction, pipelined (psycopg's pipeline mode): a statement whose result
    is not needed yet goes out with the next one that is. BEGIN, the locks, the lanes and the
    state are one round trip, the candidates a second, the mark and COMMIT a third: an idle
    release of one job takes three round trips instead of seven, each on the path from a
    submission to its start (docs/performance.md). BEGIN and COMMIT are sent here, as
    statements of the pipeline, because a transaction psycopg opens itself waits for its BEGIN
    to come back.

    Within a caller's transaction (a test's), the release is a savepoint in it, unpipelined.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    try:
        with cursor.connection.pipeline():
            cursor.execute("BEGIN")
            yield
            cursor.execute("COMMIT")
    except BaseException:
        # An error leaves the transaction aborted (or its connection broken, which the
        # dispatcher replaces): end it, so the connection is usable again.
        if cursor.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                cursor.connection.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class ReleasedJob:
    """A run_job message to publish."""

    id: UUID
    queue: str
    priority: int
    attempt: int  # the attempt number the published message will start
    timeout: int  # the job's per-attempt timeout: the message's hard time limit is set from it
    trace_id: str = ""  # the job's, sent in the message's headers for the worker's log lines


@dataclass(frozen=True)
class Release:
    """What one release did, and what the dispatcher should do next."""

    jobs: list[ReleasedJob]  # in publish order
    more: bool = False  # room is left and a lane had more due jobs than were read: go again now
    waiting: bool = False  # due jobs wait for room (a cap, the broker depth, a key): look soon
    next_due: datetime | None = None  # the earliest due time of a waiting job not due yet
    # Per served queue, its jobs QUEUED before this release (in the broker, or in a message a
    # worker holds): the messages of the released jobs are sized by what the broker will hold.
    queued: dict[str, int] = field(default_factory=dict)


def job_release_due(
    *,
    limit: int,
    queues: Sequence[str] | None = None,
    max_queued: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> Release:
    """PENDING|RETRYING (due, within their limits) -> QUEUED, up to ``limit`` jobs per queue.

    ``queues``: the queues this dispatcher serves (default: those of JOBPLATFORM_QUEUES).
    ``max_queued``: per queue, the most jobs to keep waiting in the broker (the dispatcher's
    ``BrokerDepth``; default JOBPLATFORM_DISPATCH_MAX_QUEUED for every queue, 0: no bound). The
    caller publishes one run_job message per released job after this commits, in the order
    given, and hands back with :func:`job_unrelease` the jobs it could not publish.
    """
    now = now or timezone.now()  # the application's clock, the one that wrote run_at
    served = list(dict.fromkeys(queues or settings.JOBPLATFORM_QUEUES))
    with (
        prepared_cursor() as cursor,
        psycopg.Cursor(cursor.connection) as lanes_cursor,
        psycopg.Cursor(cursor.connection) as mark_cursor,
    ):
        with _release_transaction(cursor):
            for statement in _BEGIN_RELEASE_SQL:
                cursor.execute(statement)
            # The lanes of every served queue, asked for before the state says which have
            # room, so that they come back with it: a queue without room costs its lanes'
            # probes, not a round trip more for the others.
            read_lanes(lanes_cursor, served)
            state = release_state(cursor, served)
            for reason in state.parked:
                UNPARKERS[reason].unpark(cursor, now)
            lanes_from = lanes_cursor
            if state.parked:  # the unparked jobs are back in their lanes: read them again
                read_lanes(cursor, served)
                lanes_from = cursor
            depth = settings.JOBPLATFORM_DISPATCH_MAX_QUEUED
            room_left = {  # what the queue's own bounds allow, the batch size aside
                name: flow.queue_room(
                    queue,
                    max_queued=max_queued.get(name, depth) if max_queued is not None else depth,
                    limit=sys.maxsize,
                )
                for name, queue in state.queues.items()
            }
            rooms = {name: min(limit, room) for name, room in room_left.items()}
            open_queues = [name for name in served if rooms[name] > 0 and name in state.waiting]
            # Jobs parked, or due jobs in a queue without room, wait for room that finishing
            # jobs free without telling the dispatcher: it looks again soon.
            waiting = bool(state.parked) or any(
                rooms[name] == 0 and not state.queues[name].paused for name in state.waiting
            )
            queued = {name: queue.queued for name, queue in state.queues.items()}
            if not open_queues:
                return Release(jobs=[], waiting=waiting, queued=queued)
            lanes = [lane for lane in lanes_read(lanes_from) if lane.queue in open_queues]
            due = [lane for lane in lanes if lane.due_at <= now]
            quotas = flow.lane_quotas(due, rooms)
            read = _candidates(cursor, quotas, now)
            candidates = [job for jobs in read.values() for job in jobs]
            gates = [make(cursor, candidates, now) for make in GATES]
            plan = flow.plan_release(
                candidates=candidates,
                rooms=rooms,
                in_flight=state.in_flight,
                weights={lane.owner_id: lane.weight for lane in due},
                gates=gates,
            )
            _mark_released(mark_cursor, plan.release)  # read once committed
            for gate in gates:
                refused = plan.parked.get(gate.reason)
                if refused:
                    PARKERS[gate.reason](cursor, refused, now, gate)
                settle = getattr(gate, "settle", None)
                if settle is not None:
                    settle(cursor, now)
        released = _marked(mark_cursor, plan.release)
    left = dict(room_left)
    for job in plan.release:
        left[job.queue] -= 1
    return Release(
        jobs=released,
        # A lane read to its quota may hold more due jobs; they fit if its queue has room left
        # (past this release's batch, too).
        more=any(len(read[lane]) >= q and left[lane.queue] > 0 for lane, q in quotas.items()),
        # Due jobs left behind because their queue's room ran out, or parked ones.
        waiting=waiting
        or bool(plan.parked)
        or any(left[lane.queue] == 0 for lane in quotas if read[lane]),
        next_due=min((lane.due_at for lane in lanes if lane.due_at > now), default=None),
        queued=queued,
    )


# --- reading the state -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseState:
    """What a release reads first, in one statement (every round trip is on the path from a
    submission to its start)."""

    queues: dict[str, flow.QueueState]
    in_flight: dict[tuple[str, int, str], int]  # (queue, owner, kind) -> jobs QUEUED or RUNNING
    waiting: set[str]  # the queues with waiting jobs, due or not
    parked: list[str]  # the hold reasons with parked jobs


# Per served queue: its row of jobs_queue (a queue without one runs with the defaults) and
# whether any job waits in it (one probe of job_ready). Per queue, owner, kind and status: the
# jobs in flight, through job_in_flight, as many entries as jobs are QUEUED or RUNNING, which
# the caps and the broker depth bound. Per hold reason: whether any job is parked for it.
_STATE_SQL = f"""
SELECT 'queue', q.name, NULL::bigint, NULL::boolean, NULL::varchar, 0::bigint,
       COALESCE(s.paused, false), s.max_in_flight,
       -- The first lane's entry, as the lanes' walk starts, not EXISTS: with statistics that
       -- believe the table small, EXISTS is planned as a sequential scan.
       (SELECT j.queue FROM jobs_job AS j WHERE j.status IN {WAITING} AND j.queue = q.name
        ORDER BY j.queue, j.owner_id, j.priority, j.status, j.hold LIMIT 1) IS NOT NULL
FROM unnest(%(queues)s::varchar[]) AS q(name) LEFT JOIN jobs_queue AS s ON s.name = q.name
UNION ALL
SELECT 'in_flight', queue, owner_id, attempts > 0, status, count(*), NULL, NULL, NULL
FROM jobs_job
WHERE status IN {IN_FLIGHT} AND queue = ANY(%(queues)s)
GROUP BY queue, owner_id, attempts > 0, status
{{parked}}
"""


def release_state(cursor: Cursor, queues: Sequence[str]) -> ReleaseState:
    default_cap = settings.JOBPLATFORM_QUEUE_MAX_IN_FLIGHT or None
    parked_sql = "".join(
        f"UNION ALL SELECT 'parked', {sql(reason)}, NULL, NULL, NULL, 0, NULL, NULL, "
        f"({unparker.parked_sql})\n"
        for reason, unparker in UNPARKERS.items()
    )
    cursor.execute(_STATE_SQL.format(parked=parked_sql), {"queues": list(queues)}, prepare=True)
    rows: dict[str, tuple[bool, int | None]] = {}
    in_flight: dict[tuple[str, int, str], int] = {}
    queued: dict[str, int] = dict.fromkeys(queues, 0)
    running: dict[str, int] = dict.fromkeys(queues, 0)
    waiting: set[str] = set()
    parked: list[str] = []
    for kind, name, owner, retry, status, count, paused, cap, flag in cursor.fetchall():
        if kind == "queue":
            rows[name] = (paused, cap)
            if flag:
                waiting.add(name)
        elif kind == "in_flight":
            key = (name, owner, flow.RETRY if retry else flow.NEW)
            in_flight[key] = in_flight.get(key, 0) + count
            (running if status == Job.Status.RUNNING else queued)[name] += count
        elif flag:
            parked.append(name)
    states = {
        name: flow.QueueState(
            name=name,
            paused=rows[name][0],
            max_in_flight=rows[name][1] if rows[name][1] is not None else default_cap,
            queued=queued[name],
            running=running[name],
        )
        for name in queues
    }
    return ReleaseState(queues=states, in_flight=in_flight, waiting=waiting, parked=parked)


def queue_states(
    cursor: Cursor, queues: Sequence[str]
) -> tuple[dict[str, flow.QueueState], dict[tuple[str, int, str], int]]:
    """Each queue's state and jobs in flight (the API, the admin and ``waiting_for``)."""
    state = release_state(cursor, queues)
    return state.queues, state.in_flight


def _lane_range(lane: str, until: str) -> str:
    """SQL: the unparked jobs of ``lane`` due by ``until``, as one range of job_ready.

    Row comparisons, not equalities: only job_ready leads with these columns, so no other index
    can serve the read whatever the statistics say (with equalities, statistics taken on an
    emptied table made PostgreSQL read an owner's whole history through job_owner_created).
    """
    row = f"(queue, owner_id, priority, status, hold, {DUE})"
    start = f"{lane}.queue, {lane}.owner_id, {lane}.priority, {lane}.status, {NOT_PARKED}"
    return (
        f"status IN {WAITING} AND {row} >= ({start}, '-infinity'::timestamptz)"
        f" AND {row} <= ({start}, {until})"
    )


_LANE_ORDER = f"queue, owner_id, priority, status, hold, {DUE}"  # job_ready's order

# The lanes of waiting jobs, by a skip scan of job_ready: from the first lane of each queue, each
# step finds the next (queue, owner, priority, status, hold) tuple with one index probe, so the
# walk costs one probe per lane however many jobs wait in it (PostgreSQL 15 has no skip scan of
# its own). Then the head of each lane not parked: when its first job is due.
_LANES_SQL = f"""
WITH RECURSIVE lanes AS (
    SELECT first.* FROM unnest(%(queues)s::varchar[]) AS q(name) CROSS JOIN LATERAL (
        SELECT queue, owner_id, priority, status, hold FROM jobs_job
        WHERE status IN {WAITING} AND queue = q.name
        ORDER BY queue, owner_id, priority, status, hold
        LIMIT 1
    ) AS first
  UNION ALL
    -- The row comparison alone bounds the probe: with "queue = l.queue" beside it, PostgreSQL
    -- starts at the queue's first entry and reads the whole lane to get past it. Past the
    -- queue's last lane the probe lands in the next queue, which ends the walk.
    SELECT next.* FROM lanes AS l CROSS JOIN LATERAL (
        SELECT queue, owner_id, priority, status, hold FROM jobs_job
        WHERE status IN {WAITING}
          AND (queue, owner_id, priority, status, hold)
              > (l.queue, l.owner_id, l.priority, l.status, l.hold)
        ORDER BY queue, owner_id, priority, status, hold
        LIMIT 1
    ) AS next
    WHERE next.queue = l.queue
)
SELECT l.queue, l.owner_id, l.priority, l.status, head.due, COALESCE(quota.weight, 1)
FROM lanes AS l
CROSS JOIN LATERAL (
    SELECT {DUE} AS due FROM jobs_job
    WHERE {_lane_range("l", "'infinity'::timestamptz")}
    ORDER BY {_LANE_ORDER}
    LIMIT 1
) AS head
LEFT JOIN jobs_ownerquota AS quota ON quota.owner_id = l.owner_id
WHERE l.hold = {NOT_PARKED}
"""


def read_lanes(cursor: Cursor, queues: Sequence[str]) -> None:
    """Ask for the lanes of ``queues``; :func:`lanes_read` reads them (in a pipeline, the
    statement goes out with the next one whose result is needed)."""
    cursor.execute(_LANES_SQL, {"queues": list(queues)}, prepare=True)


def lanes_read(cursor: Cursor) -> list[flow.Lane]:
    return [
        flow.Lane(
            queue=queue, owner_id=owner, priority=priority, status=status, due_at=due, weight=w
        )
        for queue, owner, priority, status, due, w in cursor.fetchall()
    ]


# The first ``quota`` due jobs of each lane, locked. SKIP LOCKED: a row another transaction holds
# (a cancel, a reschedule) is left for the next release instead of waited for.
_CANDIDATES_SQL = f"""
SELECT l.n, c.id, c.queue, c.owner_id, c.priority, c.due, c.created_at, c.attempts, c.timeout,
       c.concurrency_key, c.max_concurrency, c.rate_limit, c.hosts
FROM unnest(%(queue)s::varchar[], %(owner)s::bigint[], %(priority)s::integer[],
            %(status)s::varchar[], %(quota)s::integer[])
     WITH ORDINALITY AS l(queue, owner_id, priority, status, quota, n)
CROSS JOIN LATERAL (
    SELECT id, queue, owner_id, priority, {DUE} AS due, created_at, attempts, timeout,
           concurrency_key, max_concurrency, rate_limit, hosts
    FROM jobs_job
    WHERE {_lane_range("l", "%(now)s")}
    ORDER BY {_LANE_ORDER}, created_at
    LIMIT l.quota
    FOR UPDATE SKIP LOCKED
) AS c
"""


def _candidates(
    cursor: Cursor, quotas: dict[flow.Lane, int], now: datetime
) -> dict[flow.Lane, list[flow.Candidate]]:
    lanes = list(quotas)
    read: dict[flow.Lane, list[flow.Candidate]] = {lane: [] for lane in lanes}
    if not lanes:
        return read
    cursor.execute(
        _CANDIDATES_SQL,
        {
            "queue": [lane.queue for lane in lanes],
            "owner": [lane.owner_id for lane in lanes],
            "priority": [lane.priority for lane in lanes],
            "status": [lane.status for lane in lanes],
            "quota": [quotas[lane] for lane in lanes],
            "now": now,
        },
        prepare=True,
    )
    for n, *row in cursor.fetchall():
        job_id, queue, owner, priority, due, created, attempts, timeout, key, max_conc = row[:10]
        rate_limit, hosts = row[10:]
        read[lanes[n - 1]].append(
            flow.Candidate(
                id=job_id,
                queue=queue,
                owner_id=owner,
                priority=priority,
                due_at=due,
                created_at=created,
                attempts=attempts,
                timeout=timeout,
                concurrency_key=key,
                max_concurrency=max_conc,
                rate_limit=rate_limit,
                hosts=tuple(hosts),
            )
        )
    return read


# --- writing the decision ----------------------------------------------------------------------

# The rows are locked by this transaction since _CANDIDATES_SQL: no status check is needed. A
# retry keeps its next_attempt_at until the claim clears it: the claim reads it as the attempt's
# due time (the start-lag metric).
_MARK_RELEASED_SQL = f"""
UPDATE jobs_job
SET status = {sql(lifecycle.RELEASE.target)}, queued_at = now(), updated_at = now(),
    hold = {NOT_PARKED}, held_by = '', version = version + 1
WHERE id = ANY(%(ids)s)
RETURNING id, attempts, trace_id
"""


def _mark_released(cursor: Cursor, jobs: list[flow.Candidate]) -> None:
    if jobs:
        cursor.execute(_MARK_RELEASED_SQL, {"ids": [job.id for job in jobs]}, prepare=True)


def _marked(cursor: Cursor, jobs: list[flow.Candidate]) -> list[ReleasedJob]:
    """The jobs :func:`_mark_released` marked, as messages to publish."""
    if not jobs:
        return []
    marked = {job_id: (attempts, trace_id) for job_id, attempts, trace_id in cursor.fetchall()}
    return [
        ReleasedJob(
            id=job.id,
            queue=job.queue,
            priority=job.priority,
            attempt=marked[job.id][0] + 1,
            timeout=job.timeout,
            trace_id=marked[job.id][1],
        )
        for job in jobs
    ]


# --- concurrency keys --------------------------------------------------------------------------

# A key is its owner's: (owner, concurrency_key). The key statements read job_key_waiting by row
# comparisons on its leading columns, which no other index has (as _lane_range does).
_KEY = "(hold, owner_id, concurrency_key)"

_KEY_IN_FLIGHT_SQL = f"""
SELECT k.owner_id, k.key, (
    SELECT count(*) FROM jobs_job
    WHERE status IN {IN_FLIGHT} AND concurrency_key IS NOT NULL
      AND owner_id = k.owner_id AND concurrency_key = k.key
)
FROM unnest(%(owners)s::bigint[], %(keys)s::varchar[]) AS k(owner_id, key)
"""


def _keys(jobs: list[flow.Candidate]) -> tuple[list[int], list[str]]:
    pairs = sorted({(j.owner_id, j.concurrency_key) for j in jobs if j.concurrency_key is not None})
    return [owner for owner, _ in pairs], [key for _, key in pairs]


def key_gate(cursor: Cursor, candidates: list[flow.Candidate], now: datetime) -> flow.Gate:
    """The concurrency-key gate, with the jobs in flight of the candidates' keys (only keyed
    jobs are counted, through job_key_in_flight: a release of keyless jobs reads nothing)."""
    owners, keys = _keys(candidates)
    counts: dict[flow.Key, int] = {}
    if keys:
        cursor.execute(_KEY_IN_FLIGHT_SQL, {"owners": owners, "keys": keys}, prepare=True)
        counts = {(owner, key): n for owner, key, n in cursor.fetchall()}
    return flow.ConcurrencyKeyGate(counts)


# A key found full parks the jobs the plan refused and the other due jobs of the key that wait
# in the lanes, so that a backlog of one key does not stand in its owner's lanes, read and
# refused again by every release, ahead of the owner's other jobs.
_PARK_KEYS_SQL = f"""
UPDATE jobs_job SET hold = {KEY_PARKED}
WHERE id = ANY(ARRAY(
    SELECT j.id FROM unnest(%(owners)s::bigint[], %(keys)s::varchar[]) AS k(owner_id, key)
    CROSS JOIN LATERAL (
        SELECT id FROM jobs_job
        WHERE status IN {WAITING} AND concurrency_key IS NOT NULL
          AND {_KEY} >= ({NOT_PARKED}, k.owner_id, k.key)
          AND {_KEY} <= ({NOT_PARKED}, k.owner_id, k.key) AND {DUE} <= %(now)s
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS j
)) OR id = ANY(%(ids)s)
"""


def park_key_jobs(
    cursor: Cursor, refused: list[flow.Candidate], now: datetime, gate: flow.Gate
) -> None:
    owners, keys = _keys(refused)
    params = {
        "owners": owners,
        "keys": keys,
        "now": now,
        "limit": PARK_BATCH,
        "ids": [job.id for job in refused],
    }
    cursor.execute(_PARK_KEYS_SQL, params, prepare=True)


# Parked keys (a skip scan of job_key_waiting: one probe per key with parked jobs, and only a
# key that was full has any), the room each has now (its first parked job's max_concurrency,
# less its jobs in flight and its due jobs already back in the lanes), and as many of its parked
# jobs back into the lanes, highest priority first, then FIFO. A key's jobs in a paused queue
# stay parked. Run only when a job is parked (ReleaseState.parked).
_UNPARK_KEYS_SQL = f"""
WITH RECURSIVE parked(hold, owner_id, key) AS (
    (SELECT hold, owner_id, concurrency_key FROM jobs_job
     WHERE status IN {WAITING} AND concurrency_key IS NOT NULL AND hold = {KEY_PARKED}
     ORDER BY hold, owner_id, concurrency_key LIMIT 1)
  UNION ALL
    SELECT next.* FROM parked AS p CROSS JOIN LATERAL (
        SELECT hold, owner_id, concurrency_key FROM jobs_job
        WHERE status IN {WAITING} AND concurrency_key IS NOT NULL
          AND {_KEY} > (p.hold, p.owner_id, p.key)
        ORDER BY hold, owner_id, concurrency_key LIMIT 1
    ) AS next
    WHERE next.hold = {KEY_PARKED}
), room AS (
    SELECT p.owner_id, p.key, first.max_concurrency
        - (SELECT count(*) FROM jobs_job
           WHERE status IN {IN_FLIGHT} AND concurrency_key IS NOT NULL
             AND owner_id = p.owner_id AND concurrency_key = p.key)
        - (SELECT count(*) FROM jobs_job
           WHERE status IN {WAITING} AND concurrency_key IS NOT NULL
             AND {_KEY} >= ({NOT_PARKED}, p.owner_id, p.key)
             AND {_KEY} <= ({NOT_PARKED}, p.owner_id, p.key) AND {DUE} <= %(now)s
             AND queue NOT IN (SELECT name FROM jobs_queue WHERE paused)) AS room
    FROM parked AS p CROSS JOIN LATERAL (
        SELECT max_concurrency FROM jobs_job
        WHERE status IN {WAITING} AND concurrency_key IS NOT NULL
          AND {_KEY} >= ({KEY_PARKED}, p.owner_id, p.key)
          AND {_KEY} <= ({KEY_PARKED}, p.owner_id, p.key)
          AND queue NOT IN (SELECT name FROM jobs_queue WHERE paused)
        ORDER BY hold, owner_id, concurrency_key, priority DESC, {DUE}
        LIMIT 1
    ) AS first
), back AS (
    UPDATE jobs_job SET hold = {NOT_PARKED}
    WHERE id = ANY(ARRAY(
        SELECT j.id FROM room AS r CROSS JOIN LATERAL (
            SELECT id FROM jobs_job
            WHERE status IN {WAITING} AND concurrency_key IS NOT NULL
              AND {_KEY} >= ({KEY_PARKED}, r.owner_id, r.key)
              AND {_KEY} <= ({KEY_PARKED}, r.owner_id, r.key)
              AND queue NOT IN (SELECT name FROM jobs_queue WHERE paused)
            ORDER BY hold, owner_id, concurrency_key, priority DESC, {DUE}
            LIMIT greatest(r.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS j
    ))
    RETURNING 1
)
SELECT count(*) FROM back
"""


def unpark_keys(cursor: Cursor, now: datetime) -> None:
    """Parked jobs of keys with room back into the lanes."""
    cursor.execute(_UNPARK_KEYS_SQL, {"now": now}, prepare=True)


@dataclass(frozen=True)
class Unparker:
    """How jobs parked for one hold reason come back once the reason has passed."""

    parked_sql: str  # an SQL boolean, one index probe: whether any job is parked for it
    unpark: Callable[[Cursor, datetime], None]


# In release order (DESIGN §3): the gates a candidate must pass, then the queue's room. A gate
# may have ``settle(cursor, now)``, called after the plan (to record what it let through).
GATES: list[Callable[[Cursor, list[flow.Candidate], datetime], flow.Gate]] = [
    holds.breaker_gate,
    key_gate,
    holds.rate_limit_gate,
]
# How jobs refused for a reason are parked, and how parked jobs come back, per Job.hold.
PARKERS: dict[str, Callable[[Cursor, list[flow.Candidate], datetime, flow.Gate], None]] = {
    Hold.CONCURRENCY_KEY: park_key_jobs,
    Hold.CIRCUIT_BREAKER: holds.park_named,
    Hold.RATE_LIMIT: holds.park_named,
}
UNPARKERS: dict[str, Unparker] = {
    Hold.CONCURRENCY_KEY: Unparker(
        parked_sql=f"EXISTS (SELECT FROM jobs_job WHERE status IN {WAITING}"
        f" AND concurrency_key IS NOT NULL AND hold = {KEY_PARKED})",
        unpark=unpark_keys,
    ),
    Hold.CIRCUIT_BREAKER: Unparker(
        parked_sql=holds.parked_sql(Hold.CIRCUIT_BREAKER), unpark=holds.unpark_breakers
    ),
    Hold.RATE_LIMIT: Unparker(
        parked_sql=holds.parked_sql(Hold.RATE_LIMIT), unpark=holds.unpark_rate_limits
    ),
}


# --- lost messages, failed publishes -----------------------------------------------------------

_RELEASE_LOST_SQL = f"""
UPDATE jobs_job
SET queued_at = %(now)s, updated_at = %(now)s
WHERE id = ANY(ARRAY(  -- by primary key, never through a join the planner could misjudge
    SELECT id FROM jobs_job
    WHERE status IN {sql_in(lifecycle.REDELIVER_QUEUED.sources)} AND queued_at < %(cutoff)s
      {{queues}}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED  -- several dispatchers: each lost job is published again once
))
RETURNING id, queue, priority, attempts, timeout, trace_id
"""


def job_release_lost(
    *, older_than: float, limit: int, queues: Sequence[str] | None = None
) -> list[ReleasedJob]:
    """Publish again the QUEUED jobs whose message should have started them ``older_than``
    seconds ago (Redis restarted empty, a worker died holding the message).

    The clock restarts, so a job is published again at most once per ``older_than``; if the old
    message does turn up, one of the two claims the attempt and the other finds nothing. The job
    was counted in flight when it was released: publishing it again changes no count.
    """
    now = timezone.now()
    params = {
        "cutoff": now - timedelta(seconds=older_than),
        "limit": limit,
        "now": now,
        "queues": list(queues or []),
    }
    queue_filter = "AND queue = ANY(%(queues)s)" if queues else ""
    with prepared_cursor() as cursor:
        cursor.execute(_RELEASE_LOST_SQL.format(queues=queue_filter), params, prepare=True)
        rows = cursor.fetchall()
    return [_released(row) for row in rows]


# The jobs whose message was on a broker that lost its data: QUEUED since before it (a retry
# waits in PostgreSQL, not in the broker, until the dispatcher releases it). Each is stamped with
# now, so another dispatcher that noticed the same loss skips it, and REDELIVER_AFTER's clock
# restarts.
_RELEASE_BROKER_LOST_SQL = f"""
UPDATE jobs_job
SET queued_at = %(now)s, updated_at = %(now)s
WHERE id = ANY(ARRAY(  -- by primary key, never through a join the planner could misjudge
    SELECT id FROM jobs_job
    WHERE status IN {sql_in(lifecycle.REDELIVER_QUEUED.sources)} AND queued_at < %(lost_before)s
      {{queues}}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED  -- several dispatchers: each job is published again once
))
RETURNING id, queue, priority, attempts, timeout, trace_id
"""


def job_release_after_broker_loss(
    *, lost_before: datetime, limit: int, queues: Sequence[str] | None = None
) -> list[ReleasedJob]:
    """The QUEUED jobs whose message was published before ``lost_before`` to a broker that has
    since lost its data, to publish again now.

    Call until it returns fewer than ``limit``. A job whose old message did survive gets two:
    one claims the attempt, the other finds nothing. The job was counted in flight when it was
    released: publishing it again changes no count.
    """
    params = {
        "lost_before": lost_before,
        "limit": limit,
        "now": timezone.now(),
        "queues": list(queues or []),
    }
    queue_filter = "AND queue = ANY(%(queues)s)" if queues else ""
    with prepared_cursor() as cursor:
        cursor.execute(_RELEASE_BROKER_LOST_SQL.format(queues=queue_filter), params, prepare=True)
        rows = cursor.fetchall()
    return [_released(row) for row in rows]


def _released(row: tuple[Any, ...]) -> ReleasedJob:
    job_id, queue, priority, attempts, timeout, trace_id = row
    return ReleasedJob(
        id=job_id,
        queue=queue,
        priority=priority,
        attempt=attempts + 1,
        timeout=timeout,
        trace_id=trace_id,
    )


def job_unrelease(*, job_ids: list[UUID] | None = None, queue: str | None = None) -> int:
    """QUEUED -> PENDING for jobs whose message could not be published (``job_ids``), or for
    every QUEUED job of a queue being paused (``queue``). Their messages, if they reached the
    broker, find nothing to claim; the jobs are released again with fresh ones."""
    jobs = Job.objects.filter(status__in=lifecycle.UNRELEASE.sources)
    if job_ids is not None:
        jobs = jobs.filter(id__in=job_ids)
    if queue is not None:
        jobs = jobs.filter(queue=queue)
    return jobs.update(
        status=lifecycle.UNRELEASE.target,
        queued_at=None,
        updated_at=Now(),
        version=F("version") + 1,
    )
