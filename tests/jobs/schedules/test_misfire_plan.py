"""The misfire policy as a pure function: which ticks due since next_fire_at fire."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.schedules.cron import Ticks, parse_cron, zone
from jobs.schedules.policies import MisfirePlan, misfire_plan
from tests.jobs.schedules.conftest import utc

EVERY_5 = Ticks(parse_cron("*/5 * * * *"), zone("UTC"))
FIRST = utc(2026, 5, 4, 10, 0)  # next_fire_at when beat went down


def plan(policy: str, now, *, window=3600, cap=10, end_at=None) -> MisfirePlan:
    return misfire_plan(
        ticks=EVERY_5, first=FIRST, now=now, end_at=end_at, policy=policy,
        window=window, cap=cap, grace=60,
    )  # fmt: skip


def minutes(*hm: tuple[int, int]) -> tuple:
    return tuple(utc(2026, 5, 4, h, m) for h, m in hm)


@pytest.mark.parametrize("policy", ["skip", "run_once", "run_all"])
def test_a_tick_fired_on_time_fires_whatever_the_policy(policy):
    result = plan(policy, FIRST + timedelta(milliseconds=30))
    assert result == MisfirePlan(
        fire=((FIRST, 0),), skipped=None, next_fire_at=utc(2026, 5, 4, 10, 5)
    )


def test_skip_fires_only_an_on_time_tick_and_counts_the_rest():
    # Beat was down from 10:00 to 12:00:30: 12:00 is on time, the 24 ticks before it were missed.
    assert plan("skip", utc(2026, 5, 4, 12, 0, 30)) == MisfirePlan(
        fire=((utc(2026, 5, 4, 12, 0), 0),),
        skipped=(FIRST, 24),
        next_fire_at=utc(2026, 5, 4, 12, 5),
    )
    # At 12:02 even 12:00 is more than a minute late: nothing fires, 25 ticks are dropped.
    assert plan("skip", utc(2026, 5, 4, 12, 2)) == MisfirePlan(
        fire=(), skipped=(FIRST, 25), next_fire_at=utc(2026, 5, 4, 12, 5)
    )


def test_run_once_is_one_job_for_all_missed_ticks_never_a_burst():
    assert plan("run_once", utc(2026, 5, 4, 12, 2)) == MisfirePlan(
        fire=((utc(2026, 5, 4, 12, 0), 24),), skipped=None, next_fire_at=utc(2026, 5, 4, 12, 5)
    )
    # A week down: still one job (the count of missed ticks stops at the limit).
    week = plan("run_once", utc(2026, 5, 11, 10, 2))
    assert [tick for tick, _ in week.fire] == [utc(2026, 5, 11, 10, 0)]
    assert week.fire[0][1] == 1000


def test_run_all_runs_each_missed_tick_in_the_window_oldest_first_up_to_the_cap():
    now = utc(2026, 5, 4, 12, 2)
    # The window reaches back to 11:02: 11:05 ... 12:00 are 12 ticks; the cap keeps the last 10.
    result = plan("run_all", now, window=3600, cap=10)
    assert [tick for tick, _ in result.fire] == list(
        minutes((11, 15), (11, 20), (11, 25), (11, 30), (11, 35), (11, 40), (11, 45), (11, 50),
                (11, 55), (12, 0))
    )  # fmt: skip
    assert result.skipped == (FIRST, 15)
    assert plan("run_all", now, window=900, cap=10).fire == tuple(
        (t, 0) for t in minutes((11, 50), (11, 55), (12, 0))
    )


def test_ticks_after_end_at_are_not_due_and_the_schedule_ends():
    end = utc(2026, 5, 4, 10, 12)
    result = plan("run_all", utc(2026, 5, 4, 12, 0), end_at=end, window=7 * 24 * 3600)
    assert [tick for tick, _ in result.fire] == list(minutes((10, 0), (10, 5), (10, 10)))
    assert result.next_fire_at is None
