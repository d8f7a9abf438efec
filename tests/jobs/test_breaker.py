"""The circuit breaker's rules (jobs.breaker), from tables, without a database or a clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from jobs.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerPolicy,
    after_failure,
    after_success,
    holds,
    opened,
    probe_allowed,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = BreakerPolicy(failures=3, window=10, cooldown=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def failures(*seconds: float, policy: BreakerPolicy = POLICY) -> Breaker:
    breaker = Breaker()
    for s in seconds:
        breaker = after_failure(breaker, now=at(s), policy=policy)
    return breaker


@pytest.mark.parametrize(
    ("seconds", "state", "counted"),
    [
        ((0,), CLOSED, 1),
        ((0, 1), CLOSED, 2),
        ((0, 1, 2), OPEN, 3),  # the threshold within the window
        ((0, 1, 10), CLOSED, 1),  # the third came after the window: a new window
        ((0, 9, 11, 12), CLOSED, 2),  # 11 starts a new window: 11, 12
        ((0, 9, 11, 12, 13), OPEN, 3),
    ],
)
def test_failures_open_the_breaker_only_within_one_window(seconds, state, counted):
    breaker = failures(*seconds)
    assert (breaker.state, breaker.failures) == (state, counted)


def test_an_opened_breaker_waits_for_its_cooldown_then_lets_one_probe_through():
    breaker = failures(0, 1, 2)
    assert breaker.retry_at == at(32) and holds(breaker)
    assert not probe_allowed(breaker, now=at(31), policy=POLICY)
    assert probe_allowed(breaker, now=at(32), policy=POLICY)
    probing = replace(breaker, state=HALF_OPEN, probe_job=uuid4(), probe_at=at(32))
    assert holds(probing) and not probe_allowed(probing, now=at(40), policy=POLICY)
    # A probe that never told (cancelled, or it failed an earlier step): another after cooldown.
    assert probe_allowed(probing, now=at(62), policy=POLICY)


def test_the_probes_outcome_closes_the_breaker_or_opens_it_again():
    probing = replace(failures(0, 1, 2), state=HALF_OPEN, probe_job=uuid4(), probe_at=at(32))
    assert after_success(probing) == Breaker()
    again = after_failure(probing, now=at(33), policy=POLICY)
    assert (again.state, again.retry_at, again.probe_job) == (OPEN, at(63), None)


def test_failures_while_open_are_counted_but_do_not_move_the_retry_time():
    breaker = failures(0, 1, 2)
    later = after_failure(breaker, now=at(5), policy=POLICY)
    assert (later.state, later.retry_at, later.failures) == (OPEN, at(32), 4)


def test_a_success_changes_nothing_but_a_half_open_breaker():
    assert after_success(failures(0, 1)) == failures(0, 1)
    assert after_success(failures(0, 1, 2)).state == OPEN


def test_a_breaker_opened_by_hand_stays_open_without_probes():
    manual = opened(Breaker(), now=at(0), retry_at=None)
    assert manual.manual and holds(manual)
    assert not probe_allowed(manual, now=at(10_000), policy=POLICY)
    assert after_success(manual) == manual
    assert after_failure(manual, now=at(1), policy=POLICY).state == OPEN


def test_a_threshold_of_zero_never_opens():
    off = BreakerPolicy(failures=0, window=10, cooldown=30)
    assert failures(*range(100), policy=off).state == CLOSED
