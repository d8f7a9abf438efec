"""The release's holds for circuit breakers and rate limits: their gates, how the jobs they
refuse are parked (``Job.hold`` and ``Job.held_by``: the host or the limit) and how parked jobs
come back (docs/architecture.md#flow-control). ``jobs.services.release`` plugs them in.

Neither costs anything to a release whose candidates have no http step and no ``rate_limit``:
the gates then read nothing, from PostgreSQL or Redis. With http hosts, a release reads the
breakers that are not closed and the limits named after them (one indexed statement each);
only with a configured limit does it go to Redis, once for every limit at once, and once more
to hand back the tokens its plan did not use.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

import psycopg
import redis

from jobs import breaker as rules
from jobs import flow, lifecycle, ratelimit
from jobs.lifecycle import sql, sql_in
from jobs.models import CircuitBreaker, Hold, Job

Cursor = psycopg.Cursor[Any]
logger = logging.getLogger("jobplatform.flow")

WAITING = sql_in(lifecycle.RELEASE.sources)
DUE = f"(CASE WHEN status = {sql(Job.Status.RETRYING)} THEN next_attempt_at ELSE run_at END)"
# Parked jobs brought back per name and release, when what held them has passed.
UNPARK_BATCH = 1000


def parked_sql(reason: str) -> str:
    """SQL: whether any job is parked for ``reason`` (one probe of job_held)."""
    return f"EXISTS (SELECT FROM jobs_job WHERE status IN {WAITING} AND hold = {sql(reason)})"


# The names (hosts, limits) that hold parked jobs: a skip scan of job_held, one probe per name
# however many jobs it holds. The hold is a literal, not a parameter: only then can PostgreSQL
# prove that the statement's rows are within job_held's partial predicate.
def _held_by_sql(reason: str) -> str:
    parked = f"status IN {WAITING} AND hold = {sql(reason)}"
    return f"""
WITH RECURSIVE held(name) AS (
    (SELECT held_by FROM jobs_job WHERE {parked} ORDER BY held_by LIMIT 1)
  UNION ALL
    SELECT (SELECT held_by FROM jobs_job WHERE {parked} AND held_by > h.name
            ORDER BY held_by LIMIT 1)
    FROM held AS h WHERE h.name IS NOT NULL
)
SELECT name FROM held WHERE name IS NOT NULL
"""


# Parked jobs back into the lanes, per name as many as given, highest priority first, then FIFO
# (job_held's order).
def _unpark_sql(reason: str) -> str:
    return f"""
UPDATE jobs_job SET hold = '', held_by = ''
WHERE id = ANY(ARRAY(
    SELECT j.id FROM unnest(%(names)s::varchar[], %(counts)s::integer[]) AS u(name, n)
    CROSS JOIN LATERAL (
        SELECT id FROM jobs_job
        WHERE status IN {WAITING} AND hold = {sql(reason)} AND held_by = u.name
        ORDER BY priority DESC, {DUE}
        LIMIT u.n
        FOR UPDATE SKIP LOCKED  -- a job a client is cancelling stays parked until next time
    ) AS j
))
"""


HELD_BY_SQL: dict[str, str] = {
    reason: _held_by_sql(reason) for reason in (Hold.CIRCUIT_BREAKER, Hold.RATE_LIMIT)
}
UNPARK_SQL: dict[str, str] = {
    reason: _unpark_sql(reason) for reason in (Hold.CIRCUIT_BREAKER, Hold.RATE_LIMIT)
}

_PARK_SQL = f"""
UPDATE jobs_job AS j SET hold = %(hold)s, held_by = p.name
FROM unnest(%(ids)s::uuid[], %(names)s::varchar[]) AS p(id, name)
WHERE j.id = p.id AND j.status IN {WAITING}
"""


def _held_by(cursor: Cursor, reason: str) -> list[str]:
    cursor.execute(HELD_BY_SQL[reason], prepare=True)
    return [name for (name,) in cursor.fetchall()]


def _unpark(cursor: Cursor, reason: str, counts: dict[str, int]) -> None:
    counts = {name: n for name, n in counts.items() if n > 0}
    if counts:
        cursor.execute(
            UNPARK_SQL[reason],
            {"names": list(counts), "counts": list(counts.values())},
            prepare=True,
        )


def park_named(
    cursor: Cursor, refused: list[flow.Candidate], now: datetime, gate: flow.Gate
) -> None:
    """Park the jobs a named gate refused, each with the name that held it."""
    assert isinstance(gate, flow.NamedGate)
    cursor.execute(
        _PARK_SQL,
        {
            "hold": gate.reason,
            "ids": [job.id for job in refused],
            "names": [gate.held_by[job.id] for job in refused],
        },
        prepare=True,
    )


# --- circuit breakers --------------------------------------------------------------------------

_BREAKER_COLUMNS = (
    "host, state, failures, window_started_at, opened_at, retry_at, manual, probe_job, probe_at"
)
_OPEN_BREAKERS_SQL = f"""
SELECT {_BREAKER_COLUMNS} FROM jobs_circuitbreaker
WHERE host = ANY(%(hosts)s) AND state <> {sql(CircuitBreaker.State.CLOSED)}
"""

# The probe the release let through: the breaker is half-open until the probe's outcome.
_PROBE_SQL = f"""
UPDATE jobs_circuitbreaker AS b
SET state = {sql(CircuitBreaker.State.HALF_OPEN)}, probe_job = p.job, probe_at = %(now)s,
    updated_at = %(now)s
FROM unnest(%(hosts)s::varchar[], %(jobs)s::uuid[]) AS p(host, job)
WHERE b.host = p.host AND b.state <> {sql(CircuitBreaker.State.CLOSED)} AND NOT b.manual
"""


def _open_breakers(cursor: Cursor, hosts: list[str]) -> dict[str, rules.Breaker]:
    """The breakers of ``hosts`` that are not closed (hosts without a row are closed)."""
    if not hosts:
        return {}
    cursor.execute(_OPEN_BREAKERS_SQL, {"hosts": hosts}, prepare=True)
    return {
        host: rules.Breaker(
            state=state,
            failures=failures,
            window_started_at=window,
            opened_at=opened,
            retry_at=retry,
            manual=manual,
            probe_job=probe,
            probe_at=probe_at,
        )
        for host, state, failures, window, opened, retry, manual, probe, probe_at in (
            cursor.fetchall()
        )
    }


class ReleaseBreakerGate(flow.BreakerGate):
    def settle(self, cursor: Cursor, now: datetime) -> None:
        if self.probes:
            cursor.execute(
                _PROBE_SQL,
                {"hosts": list(self.probes), "jobs": list(self.probes.values()), "now": now},
                prepare=True,
            )
            logger.info("circuit breakers half-open, probes released: %s", self.probes)


def breaker_gate(cursor: Cursor, candidates: list[flow.Candidate], now: datetime) -> flow.Gate:
    hosts = sorted({host for job in candidates for host in job.hosts})
    policy = rules.BreakerPolicy.from_settings()
    breakers = _open_breakers(cursor, hosts)
    return ReleaseBreakerGate(
        {
            host: rules.probe_allowed(breaker, now=now, policy=policy)
            for host, breaker in breakers.items()
        }
    )


def unpark_breakers(cursor: Cursor, now: datetime) -> None:
    """Jobs of hosts whose breaker closed back into the lanes; and of a host whose breaker lets
    a probe through, one (the gate then lets it go)."""
    hosts = _held_by(cursor, Hold.CIRCUIT_BREAKER)
    if not hosts:
        return
    policy = rules.BreakerPolicy.from_settings()
    breakers = _open_breakers(cursor, hosts)
    counts = {
        host: UNPARK_BATCH
        if host not in breakers
        else int(rules.probe_allowed(breakers[host], now=now, policy=policy))
        for host in hosts
    }
    _unpark(cursor, Hold.CIRCUIT_BREAKER, counts)


# --- rate limits -------------------------------------------------------------------------------

_LIMITS_SQL = "SELECT name, rate, burst FROM jobs_ratelimit WHERE name = ANY(%(names)s)"


def _limits(cursor: Cursor, names: list[str]) -> dict[str, tuple[float, int]]:
    if not names:
        return {}
    cursor.execute(_LIMITS_SQL, {"names": names}, prepare=True)
    return {name: (rate, burst) for name, rate, burst in cursor.fetchall()}


def _take(limits: dict[str, tuple[float, int]], counts: dict[str, int]) -> dict[str, int]:
    """Tokens taken per limit (see jobs.ratelimit.take); none while Redis cannot be reached:
    the limited jobs wait, the others go on."""
    wants = [
        ratelimit.Want(name=name, rate=limits[name][0], burst=limits[name][1], count=count)
        for name, count in counts.items()
    ]
    try:
        return ratelimit.take(wants)
    except redis.RedisError as exc:
        logger.warning("rate limits %s: Redis unavailable (%s); their jobs wait", list(counts), exc)
        return dict.fromkeys(counts, 0)


class ReleaseRateLimitGate(flow.RateLimitGate):
    def __init__(self, tokens: dict[str, int], limits: dict[str, tuple[float, int]]) -> None:
        super().__init__(tokens)
        self.limits = limits

    def settle(self, cursor: Cursor, now: datetime) -> None:
        unused = {name: -left for name, left in self.left.items() if left > 0}
        if unused:
            _take(self.limits, unused)  # handed back: the next release may use them


def rate_limit_gate(cursor: Cursor, candidates: list[flow.Candidate], now: datetime) -> flow.Gate:
    wanted = Counter(name for job in candidates for name in job.limits)
    limits = _limits(cursor, sorted(wanted))
    if not limits:
        return ReleaseRateLimitGate({}, {})
    return ReleaseRateLimitGate(_take(limits, {name: wanted[name] for name in limits}), limits)


def unpark_rate_limits(cursor: Cursor, now: datetime) -> None:
    """As many parked jobs of each limit back into the lanes as its bucket holds tokens now
    (every one, up to a batch, of a limit that was deleted)."""
    names = _held_by(cursor, Hold.RATE_LIMIT)
    if not names:
        return
    limits = _limits(cursor, names)
    counts = dict.fromkeys(names, UNPARK_BATCH)
    counts.update(_peek(limits))
    _unpark(cursor, Hold.RATE_LIMIT, counts)


def _peek(limits: dict[str, tuple[float, int]]) -> dict[str, int]:
    """Tokens each bucket holds now, taking none."""
    wants = [
        ratelimit.Want(name=name, rate=rate, burst=burst, count=0)
        for name, (rate, burst) in limits.items()
    ]
    try:
        return ratelimit.tokens(wants)
    except redis.RedisError:
        return dict.fromkeys(limits, 0)
