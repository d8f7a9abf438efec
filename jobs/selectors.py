"""Reads on jobs. Visibility lives here: a user sees their own jobs and their teams', an admin
all (jobplatform.access)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone
from redis import RedisError

from jobplatform.access import owned_by_visible
from jobplatform.db import prepared_cursor
from jobplatform.errors import NotFound
from jobs import lifecycle, ratelimit
from jobs.lifecycle import sql, sql_in
from jobs.models import CircuitBreaker, Hold, Job, JobStatus, OwnerQuota, Queue, RateLimit
from jobs.services.release import DUE, queue_states

S = Job.Status


def job_list(*, user: User) -> QuerySet[Job]:
    return owned_by_visible(Job.objects.select_related("owner"), user, "owner")


# What a job list shows (jobs.api.serializers.job_summary_row_output), read as rows, not model
# instances: no Job and User object per job, and none of the JSON columns a list does not show
# (steps, outputs, result, error, and an input of up to 64 KiB: up to 32 MiB of JSON for a page of
# 500). docs/performance.md has the figures.
JOB_SUMMARY_COLUMNS = (
    "id", "name", "status", "queue", "priority", "attempts", "run_at", "schedule_id",
    "scheduled_for", "created_at", "started_at", "finished_at",
)  # fmt: skip


def job_summary_rows(*, user: User) -> QuerySet[Job, dict[str, Any]]:
    """``job_list`` as dicts of JOB_SUMMARY_COLUMNS and ``owner_username``."""
    username = F(f"owner__{get_user_model().USERNAME_FIELD}")
    rows: QuerySet[Job, dict[str, Any]] = job_list(user=user).values(
        *JOB_SUMMARY_COLUMNS, owner_username=username
    )
    return rows


def job_get_visible(*, job_id: UUID, user: User) -> Job:
    """The job, if ``user`` may see it; otherwise NotFound, so others' ids are not disclosed."""
    try:
        return job_list(user=user).get(id=job_id)
    except Job.DoesNotExist:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}") from None


# --- flow control ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueView:
    """A queue as the API and the admin show it."""

    name: str
    paused: bool
    paused_at: datetime | None
    max_in_flight: int | None  # the cap in force; None: no cap
    max_in_flight_is_default: bool  # the queue has no cap of its own
    max_queued: int  # JOBPLATFORM_DISPATCH_MAX_QUEUED, the broker depth's bound; 0: none
    queued: int
    running: int


def queue_names() -> list[str]:
    """The configured queues, then any other queue an operator gave a row."""
    rows = [
        n
        for n in Queue.objects.values_list("name", flat=True)
        if n not in settings.JOBPLATFORM_QUEUES
    ]
    return [*settings.JOBPLATFORM_QUEUES, *sorted(rows)]


def queue_list(*, names: list[str] | None = None) -> list[QueueView]:
    """Queues with their state and jobs in flight (a count bounded by the caps)."""
    names = names if names is not None else queue_names()
    own = {q.name: q for q in Queue.objects.filter(name__in=names)}
    with prepared_cursor() as cursor:
        states, _ = queue_states(cursor, names)
    return [
        QueueView(
            name=name,
            paused=states[name].paused,
            paused_at=own[name].paused_at if name in own else None,
            max_in_flight=states[name].max_in_flight,
            max_in_flight_is_default=name not in own or own[name].max_in_flight is None,
            max_queued=settings.JOBPLATFORM_DISPATCH_MAX_QUEUED,
            queued=states[name].queued,
            running=states[name].running,
        )
        for name in names
    ]


def queue_get(*, name: str) -> QueueView:
    if name not in queue_names():
        raise NotFound("QUEUES.NOT_FOUND", f"no queue {name!r}", {"queues": queue_names()})
    return queue_list(names=[name])[0]


def _waiting_for_run_at(job: Job, queue: QueueView, now: datetime) -> dict[str, Any] | None:
    if job.status == Job.Status.RETRYING:
        if job.next_attempt_at is not None and job.next_attempt_at > now:
            return {
                "reason": "retry_backoff",
                "message": "the retry's backoff is not over yet",
                "until": job.next_attempt_at,
            }
    elif job.run_at > now:
        return {"reason": "run_at", "message": "its run_at is not reached yet", "until": job.run_at}
    return None


def _waiting_for_paused_queue(job: Job, queue: QueueView, now: datetime) -> dict[str, Any] | None:
    if not queue.paused:
        return None
    return {
        "reason": "paused_queue",
        "message": f"queue {queue.name!r} is paused",
        "queue": queue.name,
        "paused_at": queue.paused_at,
    }


def _waiting_for_concurrency_key(
    job: Job, queue: QueueView, now: datetime
) -> dict[str, Any] | None:
    if job.concurrency_key is None:
        return None
    in_flight = Job.objects.filter(
        owner_id=job.owner_id, concurrency_key=job.concurrency_key, status__in=lifecycle.IN_FLIGHT
    ).count()
    if job.hold != Hold.CONCURRENCY_KEY and in_flight < job.max_concurrency:
        return None
    return {
        "reason": "concurrency_key",
        "message": f"{in_flight} jobs of its concurrency key are in flight "
        f"(max_concurrency {job.max_concurrency})",
        "concurrency_key": job.concurrency_key,
        "in_flight": in_flight,
        "max_concurrency": job.max_concurrency,
    }


def _waiting_for_queue_cap(job: Job, queue: QueueView, now: datetime) -> dict[str, Any] | None:
    in_flight = queue.queued + queue.running
    if queue.max_in_flight is None or in_flight < queue.max_in_flight:
        return None
    return {
        "reason": "queue_cap",
        "message": f"queue {queue.name!r} has {in_flight} jobs in flight, its cap",
        "in_flight": in_flight,
        "max_in_flight": queue.max_in_flight,
    }


def _waiting_for_circuit_breaker(
    job: Job, queue: QueueView, now: datetime
) -> dict[str, Any] | None:
    if not job.hosts:
        return None
    held = CircuitBreaker.objects.filter(host__in=job.hosts).exclude(
        state=CircuitBreaker.State.CLOSED
    )
    breaker = min(held, key=lambda b: job.hosts.index(b.host), default=None)
    if breaker is None:
        return None
    until = "an operator closes it" if breaker.manual else "a probe to it succeeds"
    return {
        "reason": "circuit_breaker",
        "message": f"the circuit breaker of {breaker.host} is {breaker.state}: its jobs wait "
        f"until {until}",
        "host": breaker.host,
        "state": breaker.state,
        "retry_at": breaker.retry_at,
    }


def _waiting_for_rate_limit(job: Job, queue: QueueView, now: datetime) -> dict[str, Any] | None:
    if job.hold != Hold.RATE_LIMIT:
        return None
    limit = RateLimit.objects.filter(name=job.held_by).first()
    if limit is None:
        return None
    return {
        "reason": "rate_limit",
        "message": f"rate limit {limit.name!r} ({limit.rate:g}/s, burst {limit.burst}) has no "
        "token left: the job goes with one of the next",
        "limit": limit.name,
        "rate": limit.rate,
        "burst": limit.burst,
    }


WaitingReason = Callable[[Job, QueueView, datetime], dict[str, Any] | None]
# Why a waiting job is not released yet, in the order the release applies its controls.
WAITING_REASONS: list[WaitingReason] = [
    _waiting_for_run_at,
    _waiting_for_paused_queue,
    _waiting_for_circuit_breaker,
    _waiting_for_concurrency_key,
    _waiting_for_rate_limit,
    _waiting_for_queue_cap,
]


def job_waiting_for(*, job: Job, now: datetime | None = None) -> list[dict[str, Any]]:
    """Why a PENDING or RETRYING job is still waiting, computed now; [] for any other job.

    Each reason is ``{"reason": code, "message": ..., details}``. A due job that nothing holds
    gets ``release``: the dispatcher releases it as workers take the jobs of its queue already
    in the broker (``queued``), in fair-share and priority order.
    """
    if job.status not in lifecycle.RELEASE.sources:
        return []
    now = now or timezone.now()
    queue = queue_list(names=[job.queue])[0]
    reasons = [r for check in WAITING_REASONS if (r := check(job, queue, now)) is not None]
    return reasons or [
        {
            "reason": "release",
            "message": f"due and within its limits: the dispatcher releases it as workers take "
            f"the {queue.queued} jobs of queue {queue.name!r} already in the broker, in "
            "fair-share and priority order",
            "queued": queue.queued,
        }
    ]


def owner_limits(*, user: User) -> dict[str, Any]:
    """The caller's admission caps and fair-share weight, with its unfinished jobs counted now."""
    from jobs.services.admission import admission

    cap, unfinished = admission.owner_usage(owner_id=user.pk)
    quota = OwnerQuota.objects.filter(owner_id=user.pk).first()
    return {
        "max_unfinished": cap or None,
        "unfinished": unfinished if cap else None,
        "weight": quota.weight if quota else 1,
        "platform_max_unfinished": settings.JOBPLATFORM_MAX_UNFINISHED or None,
        "max_bulk_jobs": settings.JOBPLATFORM_MAX_BULK_JOBS,
        "retry_after": settings.JOBPLATFORM_ADMISSION_RETRY_AFTER,
    }


# --- rate limits and circuit breakers ----------------------------------------------------------


@dataclass(frozen=True)
class RateLimitView:
    name: str
    rate: float
    burst: int
    tokens: int | None  # whole tokens in its bucket now; None: Redis could not be asked
    held: int  # jobs parked for it
    updated_at: datetime


def _held_counts(reason: str, names: list[str]) -> dict[str, int]:
    rows = (
        Job.objects.filter(status__in=lifecycle.RELEASE.sources, hold=reason, held_by__in=names)
        .values_list("held_by")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def rate_limit_list(*, names: list[str] | None = None) -> list[RateLimitView]:
    limits = RateLimit.objects.order_by("name")
    if names is not None:
        limits = limits.filter(name__in=names)
    rows = list(limits)
    held = _held_counts(Hold.RATE_LIMIT, [limit.name for limit in rows])
    try:
        tokens: dict[str, int] = ratelimit.tokens(
            [ratelimit.Want(name=r.name, rate=r.rate, burst=r.burst, count=0) for r in rows]
        )
    except RedisError:
        tokens = {}
    return [
        RateLimitView(
            name=r.name,
            rate=r.rate,
            burst=r.burst,
            tokens=tokens.get(r.name),
            held=held.get(r.name, 0),
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def rate_limit_get(*, name: str) -> RateLimitView:
    found = rate_limit_list(names=[name])
    if not found:
        raise NotFound("LIMITS.NOT_FOUND", f"no rate limit {name!r}")
    return found[0]


@dataclass(frozen=True)
class BreakerView:
    host: str
    state: str
    failures: int
    window_started_at: datetime | None
    opened_at: datetime | None
    retry_at: datetime | None
    manual: bool
    probe_job: UUID | None
    probe_at: datetime | None
    held: int  # jobs parked for it


def breaker_list(*, hosts: list[str] | None = None) -> list[BreakerView]:
    """The breakers of hosts that ever failed (a host without a row is closed)."""
    rows = CircuitBreaker.objects.order_by("host")
    if hosts is not None:
        rows = rows.filter(host__in=hosts)
    found = list(rows)
    if hosts is not None:  # a host asked for by name, never failed: closed
        known = {b.host for b in found}
        found += [CircuitBreaker(host=host) for host in hosts if host not in known]
    held = _held_counts(Hold.CIRCUIT_BREAKER, [b.host for b in found])
    return [
        BreakerView(
            host=b.host,
            state=b.state,
            failures=b.failures,
            window_started_at=b.window_started_at,
            opened_at=b.opened_at,
            retry_at=b.retry_at,
            manual=b.manual,
            probe_job=b.probe_job,
            probe_at=b.probe_at,
            held=held.get(b.host, 0),
        )
        for b in found
    ]


def breaker_get(*, host: str) -> BreakerView:
    return breaker_list(hosts=[host.lower()])[0]


@dataclass(frozen=True)
class QueueSummary:
    """One queue at a glance: what waits, what runs, how the last hour went."""

    queue: str
    due: int  # PENDING and due: waiting for the dispatcher (or its flow control)
    scheduled: int  # PENDING with run_at in the future
    queued: int  # released to the broker, not claimed yet
    running: int
    retrying: int
    oldest_due_at: datetime | None  # the earliest due time among due, queued and retrying jobs
    succeeded_last_hour: int
    failed_last_hour: int
    cancelled_last_hour: int

    @property
    def depth(self) -> int:
        """Jobs due and not running: what a worker could start now."""
        return self.due + self.queued + self.retrying

    @property
    def failure_rate(self) -> float | None:
        """Failed / (succeeded + failed) over the last hour; None when nothing finished."""
        finished = self.succeeded_last_hour + self.failed_last_hour
        return self.failed_last_hour / finished if finished else None


# Unfinished jobs: few, and each state is reached through job_status_created or a partial index.
_ACTIVE_SQL = f"""
SELECT queue,
       count(*) FILTER (WHERE status = {sql(S.PENDING)} AND run_at <= %(now)s),
       count(*) FILTER (WHERE status = {sql(S.PENDING)} AND run_at > %(now)s),
       count(*) FILTER (WHERE status = {sql(S.QUEUED)}),
       count(*) FILTER (WHERE status = {sql(S.RUNNING)}),
       count(*) FILTER (WHERE status = {sql(S.RETRYING)}),
       min(CASE WHEN status IN {sql_in([S.PENDING, S.QUEUED])} AND run_at <= %(now)s THEN run_at
                WHEN status = {sql(S.RETRYING)} AND next_attempt_at <= %(now)s
                THEN next_attempt_at END)
FROM jobs_job
WHERE status IN {sql_in(lifecycle.ACTIVE)}
GROUP BY queue
"""

# Finished in the last hour. Bounded by created_at so that job_status_created serves it (there
# is no index on finished_at, which every finish would pay for): a job that took more than an
# hour from submission to its end is not counted.
_LAST_HOUR_SQL = f"""
SELECT queue,
       count(*) FILTER (WHERE status = {sql(S.SUCCEEDED)}),
       count(*) FILTER (WHERE status = {sql(S.FAILED)}),
       count(*) FILTER (WHERE status = {sql(S.CANCELLED)})
FROM jobs_job
WHERE status IN {sql_in(lifecycle.TERMINAL)} AND created_at >= %(since)s - interval '1 hour'
  AND finished_at >= %(since)s
GROUP BY queue
"""


def job_queue_summary(*, now: datetime | None = None) -> list[QueueSummary]:
    """Every queue with unfinished jobs or jobs finished in the last hour, by name (two queries)."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVE_SQL, {"now": now})
        active = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute(_LAST_HOUR_SQL, {"since": now - timedelta(hours=1)})
        finished = {row[0]: row[1:] for row in cursor.fetchall()}
    return [
        QueueSummary(
            queue, *active.get(queue, (0, 0, 0, 0, 0, None)), *finished.get(queue, (0, 0, 0))
        )
        for queue in sorted(active.keys() | finished.keys())
    ]


STATS_WINDOW = timedelta(hours=1)
# Due and waiting for a worker: pending past run_at (not yet released), or queued (released, not
# yet claimed). A retrying job waits on next_attempt_at by design, so it is not counted.
DUE_WAITING = frozenset({JobStatus.PENDING, JobStatus.QUEUED})


def job_stats(*, jobs: QuerySet[Job]) -> dict[str, Any]:
    """Counts of ``jobs`` (a ``job_list``) by status and by queue and status, the age of the
    oldest job due and waiting (DUE_WAITING), and the last hour's finished jobs: throughput and
    failure rate. Three aggregate queries; the counts scan the visible jobs (docs/api.md#stats)."""
    now = timezone.now()
    by_status = {status: 0 for status in JobStatus.values}
    by_queue: dict[str, dict[str, int]] = {}
    rows = jobs.order_by().values_list("queue", "status").annotate(n=Count("id"))
    for queue, status, n in rows:
        by_status[status] += n
        by_queue.setdefault(queue, {})[status] = n
    oldest_due = (
        jobs.order_by()
        .filter(status__in=DUE_WAITING, run_at__lte=now)
        .aggregate(oldest=Min("run_at"))["oldest"]
    )
    finished = (
        jobs.order_by()
        .filter(finished_at__gte=now - STATS_WINDOW)
        .aggregate(
            succeeded=Count("id", filter=Q(status=JobStatus.SUCCEEDED)),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
            cancelled=Count("id", filter=Q(status=JobStatus.CANCELLED)),
        )
    )
    ended = finished["succeeded"] + finished["failed"]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_queue": by_queue,
        "oldest_due_age_seconds": (now - oldest_due).total_seconds() if oldest_due else None,
        "last_hour": {
            **finished,
            "throughput_per_minute": round(ended / 60, 3),
            "failure_rate": round(finished["failed"] / ended, 4) if ended else None,
        },
    }


# --- the metrics' queue depth ------------------------------------------------------------------


@dataclass(frozen=True)
class QueueState:
    """How many unfinished jobs of a queue are in a state, and how long the oldest has been due."""

    queue: str
    state: str  # pending (due), scheduled (pending, not yet due), queued, retrying, running
    count: int
    oldest_due_age: float | None  # seconds; None when none of them is due


# The waiting jobs grouped by queue, state, hold and whether due, through job_ready (as many
# entries as jobs wait); the jobs in flight through job_in_flight. Neither touches finished jobs.
# Ages use the database's clock.
_WAITING_GROUPS_SQL = f"""
SELECT queue, status, hold, {DUE} <= now(), count(*), extract(epoch FROM now() - min({DUE}))
FROM jobs_job WHERE status IN {sql_in(lifecycle.RELEASE.sources)}
GROUP BY queue, status, hold, {DUE} <= now()
"""
_IN_FLIGHT_SQL = f"""
SELECT queue, status, count(*), extract(epoch FROM now() - min(queued_at))
FROM jobs_job WHERE status IN {sql_in(lifecycle.IN_FLIGHT)}
GROUP BY queue, status
"""


@dataclass(frozen=True)
class _WaitingGroup:
    queue: str
    status: str
    hold: str
    due: bool
    count: int
    age: float  # seconds since the oldest of them was due (negative: not due yet)


def _waiting_groups() -> list[_WaitingGroup]:
    with connection.cursor() as cursor:
        cursor.execute(_WAITING_GROUPS_SQL)
        return [_WaitingGroup(q, st, h, d, n, float(age)) for q, st, h, d, n, age in cursor]


def job_queue_states() -> list[QueueState]:
    """Unfinished jobs by queue and state, with the oldest due age (the metrics' queue depth).

    pending: due and waiting for the dispatcher; scheduled: pending, not due yet; queued: age
    since the message was published; retrying: all of them, the age of the most overdue retry.
    """
    states: dict[tuple[str, str], tuple[int, float | None]] = {}
    for group in _waiting_groups():
        state = group.status
        if group.status == JobStatus.PENDING and not group.due:
            state = "scheduled"
        count, age = states.get((group.queue, state), (0, None))
        if group.due:
            age = max(age or 0.0, group.age)
        states[(group.queue, state)] = (count + group.count, age)
    with connection.cursor() as cursor:
        cursor.execute(_IN_FLIGHT_SQL)
        for queue, status, count, age in cursor.fetchall():
            queued = status == JobStatus.QUEUED and age is not None
            states[(queue, status)] = (count, float(age) if queued else None)
    return [
        QueueState(
            queue=queue,
            state=state,
            count=count,
            oldest_due_age=None if age is None else max(0.0, age),
        )
        for (queue, state), (count, age) in states.items()
    ]


# The reasons of WAITING_REASONS a scrape can tell per queue without a query per job.
WAITING_METRIC_REASONS = (
    "run_at",
    "retry_backoff",
    "paused_queue",
    "circuit_breaker",
    "concurrency_key",
    "rate_limit",
    "queue_cap",
    "release",
)


def job_waiting_by_reason() -> dict[tuple[str, str], int]:
    """Waiting (PENDING, RETRYING) jobs by queue and why they wait, read now: the metrics'
    flow-control holds, as ``job_waiting_for`` names them.

    Not due yet: ``run_at`` or ``retry_backoff``. Due: parked for a reason (``Job.hold``), in a
    paused queue, in a queue at its cap, else ``release`` (the dispatcher releases it as the
    broker's depth allows). A keyed job is counted under ``concurrency_key``, a job behind an
    open breaker or an empty token bucket under ``circuit_breaker`` or ``rate_limit``, once the
    release parked it.
    """
    groups = _waiting_groups()
    queues = {q.name: q for q in queue_list(names=sorted({g.queue for g in groups}))}
    counts: dict[tuple[str, str], int] = {}
    for group in groups:
        queue = queues[group.queue]
        if not group.due:
            reason = "retry_backoff" if group.status == JobStatus.RETRYING else "run_at"
        elif group.hold != Hold.NONE:
            reason = group.hold
        elif queue.paused:
            reason = "paused_queue"
        elif (
            queue.max_in_flight is not None and queue.running + queue.queued >= queue.max_in_flight
        ):
            reason = "queue_cap"
        else:
            reason = "release"
        counts[(group.queue, reason)] = counts.get((group.queue, reason), 0) + group.count
    return counts
