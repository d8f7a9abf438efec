"""Rate limits and circuit breakers: what operators set, and what http steps report.

A rate limit is a row of jobs_ratelimit (its bucket lives in Redis: jobs.ratelimit); a circuit
breaker is a row of jobs_circuitbreaker per http host, created by the host's first transient
failure (jobs.breaker holds its rules). The dispatchers read both at release
(docs/architecture.md#flow-control).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields

import redis
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from jobplatform.errors import InvalidInput, NotFound
from jobplatform.services import Action, audit_record
from jobs import breaker as rules
from jobs import ratelimit
from jobs.models import CircuitBreaker, RateLimit
from jobs.services.common import notify_dispatchers

logger = logging.getLogger("jobplatform.flow")

MAX_NAME = 300  # RateLimit.name, CircuitBreaker.host
MAX_RATE = 1_000_000.0
MAX_BURST = 1_000_000


def rate_limit_set(
    *, name: str, rate: float, burst: int | None = None, actor: User | None
) -> RateLimit:
    """Create or change the limit ``name``: ``rate`` tokens a second, at most ``burst`` saved up
    (default: one second's worth, at least 1). Its bucket starts full again."""
    if not 1 <= len(name) <= MAX_NAME or name != name.strip():
        raise InvalidInput(
            "LIMITS.INVALID_NAME", f"a limit's name has 1 to {MAX_NAME} characters, no spaces"
        )
    if isinstance(rate, bool) or not 0 < rate <= MAX_RATE:
        raise InvalidInput("LIMITS.INVALID_RATE", f"rate must be above 0 and at most {MAX_RATE:g}")
    burst = max(1, int(rate)) if burst is None else burst
    if isinstance(burst, bool) or not 1 <= burst <= MAX_BURST:
        raise InvalidInput("LIMITS.INVALID_BURST", f"burst must be between 1 and {MAX_BURST}")
    with transaction.atomic():
        limit, _ = RateLimit.objects.update_or_create(
            name=name, defaults={"rate": rate, "burst": burst}
        )
        audit_record(
            action=Action.RATE_LIMIT_SET,
            actor=actor,
            subject=f"rate limit {name}",
            details={"rate": rate, "burst": burst},
        )
    _forget_bucket(limit.name)
    return limit


def rate_limit_delete(*, name: str, actor: User | None) -> None:
    """Remove the limit: its jobs are released without it (parked ones come back)."""
    with transaction.atomic():
        deleted, _ = RateLimit.objects.filter(name=name).delete()
        if not deleted:
            raise NotFound("LIMITS.NOT_FOUND", f"no rate limit {name!r}")
        audit_record(action=Action.RATE_LIMIT_DELETED, actor=actor, subject=f"rate limit {name}")
    _forget_bucket(name)
    notify_dispatchers()


def _forget_bucket(name: str) -> None:
    try:
        ratelimit.forget(name)
    except redis.RedisError:  # the bucket expires by itself; the change stands
        logger.warning("rate limit %s: could not reset its bucket in Redis", name)


# --- circuit breakers --------------------------------------------------------------------------


def _state(row: CircuitBreaker) -> rules.Breaker:
    return rules.Breaker(**{f.name: getattr(row, f.name) for f in fields(rules.Breaker)})


def _save(row: CircuitBreaker, breaker: rules.Breaker) -> None:
    for name, value in asdict(breaker).items():
        setattr(row, name, value)
    row.save()


def _locked(host: str) -> CircuitBreaker:
    # get_or_create, then lock: two workers reporting the same host's first failure at once
    # both find (or one creates and the other finds) the row, then apply one after the other.
    CircuitBreaker.objects.get_or_create(host=host)
    return CircuitBreaker.objects.select_for_update().get(host=host)


def breaker_failure(*, host: str) -> CircuitBreaker:
    """A request to ``host`` failed transiently: counted; the breaker may open."""
    policy = rules.BreakerPolicy.from_settings()
    with transaction.atomic():
        row = _locked(host)
        before = _state(row)
        after = rules.after_failure(before, now=timezone.now(), policy=policy)
        _save(row, after)
    if after.state != before.state:
        logger.warning("circuit breaker of %s: %s -> %s", host, before.state, after.state)
    return row


# Only a half-open breaker changes on a success: one statement on the primary key, in autocommit
# (no transaction block to open and commit), which changes nothing for a host that is closed or
# never failed. The worker calls it only when a breaker of the job's hosts was not closed at the
# claim (executions.pipeline.report_to_breaker), so a successful http step whose hosts' breakers
# are closed costs none of it.
def breaker_success(*, host: str) -> bool:
    """A request to ``host`` succeeded: a half-open breaker closes. True if it closed."""
    changed = CircuitBreaker.objects.filter(
        host=host, state=CircuitBreaker.State.HALF_OPEN, manual=False
    ).update(**asdict(rules.Breaker()), updated_at=timezone.now())
    if changed:
        notify_dispatchers()  # its parked jobs come back at the next release
        logger.warning("circuit breaker of %s: half_open -> closed", host)
    return changed == 1


def breaker_open(*, host: str, actor: User | None) -> CircuitBreaker:
    """Open the breaker by hand: the host's jobs wait until an operator closes it. Idempotent."""
    if not 1 <= len(host) <= MAX_NAME:
        raise InvalidInput("BREAKERS.INVALID_HOST", f"a host has 1 to {MAX_NAME} characters")
    with transaction.atomic():
        row = _locked(host.lower())
        _save(row, rules.opened(_state(row), now=timezone.now(), retry_at=None))
        audit_record(action=Action.BREAKER_OPENED, actor=actor, subject=f"breaker of {row.host}")
    return row


def breaker_close(*, host: str, actor: User | None) -> CircuitBreaker:
    """Close the breaker (failures forgotten): the host's held jobs are released. Idempotent."""
    with transaction.atomic():
        row = CircuitBreaker.objects.select_for_update().filter(host=host.lower()).first()
        if row is None:
            return CircuitBreaker(host=host.lower())
        _save(row, rules.Breaker())
        audit_record(action=Action.BREAKER_CLOSED, actor=actor, subject=f"breaker of {row.host}")
        notify_dispatchers()
    return row
