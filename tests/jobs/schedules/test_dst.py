"""The daylight-saving policy, transition by transition, in Europe/Berlin (transitions at 02:00
and 03:00 local), America/Santiago and America/Havana (transitions at midnight) and
Australia/Lord_Howe (a 30-minute shift).

Wall-clock schedules fire a time in the spring-forward gap once, at the first valid instant after
it, and a time in the fall-back fold once, at its first occurrence. Schedules that run every hour
keep real elapsed spacing. Fire times are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from jobs.models import Schedule
from jobs.schedules.cron import Ticks, parse_cron, zone
from jobs.schedules.selectors import schedule_next_fire_times


def fires(
    expression: str, tz: str, start: datetime, end: datetime
) -> list[tuple[str, str, str | None]]:
    """(UTC instant, local time with offset, DST transition) of each firing in [start, end)."""
    ticks = Ticks(parse_cron(expression), zone(tz))
    found = []
    tick = ticks.at_or_after(start)
    while tick is not None and tick.at < end:
        assert tick.at.tzinfo is UTC
        local = tick.at.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M%z")
        found.append((tick.at.strftime("%Y-%m-%d %H:%M"), local, tick.transition))
        tick = ticks.next_after(tick.at)
    return found


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- Europe/Berlin: spring forward 2026-03-29 02:00 -> 03:00, fall back 2026-10-25 03:00 -> 02:00


def test_berlin_a_daily_time_in_the_gap_fires_once_when_the_gap_ends():
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28), utc(2026, 3, 31)) == [
        ("2026-03-28 01:30", "2026-03-28 02:30+0100", None),
        ("2026-03-29 01:00", "2026-03-29 03:00+0200", "gap"),
        ("2026-03-30 00:30", "2026-03-30 02:30+0200", None),
    ]


def test_berlin_a_daily_time_in_the_fold_fires_once_at_its_first_occurrence():
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24), utc(2026, 10, 27)) == [
        ("2026-10-24 00:30", "2026-10-24 02:30+0200", None),
        ("2026-10-25 00:30", "2026-10-25 02:30+0200", "fold"),  # not again at 01:30 UTC
        ("2026-10-26 01:30", "2026-10-26 02:30+0100", None),
    ]


def test_berlin_gap_times_that_land_on_one_instant_fire_once():
    # Six times in the gap, and 03:00 where it ends: one firing.
    assert fires("*/10 2,3 * * *", "Europe/Berlin", utc(2026, 3, 29), utc(2026, 3, 29, 1, 30)) == [
        ("2026-03-29 01:00", "2026-03-29 03:00+0200", "gap"),
        ("2026-03-29 01:10", "2026-03-29 03:10+0200", None),
        ("2026-03-29 01:20", "2026-03-29 03:20+0200", None),
    ]


def test_berlin_hourly_keeps_real_elapsed_spacing():
    spring = fires("0 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    assert [local for _, local, _ in spring] == [
        "2026-03-29 00:00+0100",
        "2026-03-29 01:00+0100",
        "2026-03-29 03:00+0200",  # one hour after 01:00: 02:00 never happened
        "2026-03-29 04:00+0200",
    ]
    autumn = fires("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert [(at, local) for at, local, _ in autumn] == [
        ("2026-10-24 23:00", "2026-10-25 01:00+0200"),
        ("2026-10-25 00:00", "2026-10-25 02:00+0200"),
        ("2026-10-25 01:00", "2026-10-25 02:00+0100"),  # 02:00 happened twice, an hour apart
        ("2026-10-25 02:00", "2026-10-25 03:00+0100"),
    ]


@pytest.mark.parametrize(
    ("tz", "transition"),
    [
        ("Europe/Berlin", utc(2026, 3, 29, 1)),
        ("Europe/Berlin", utc(2026, 10, 25, 1)),
        ("America/Santiago", utc(2026, 4, 5, 3)),
        ("America/Santiago", utc(2026, 9, 6, 4)),
        ("America/Havana", utc(2026, 3, 8, 5)),
        ("America/Havana", utc(2026, 11, 1, 5)),
    ],
)
def test_every_minute_is_sixty_real_seconds_apart_through_a_transition(tz, transition):
    day = timedelta(days=1)
    found = fires("* * * * *", tz, transition - day, transition + day)
    instants = [datetime.fromisoformat(at + "+00:00") for at, _, _ in found]
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(instants))
    assert instants[-1] - instants[0] == timedelta(minutes=len(instants) - 1)


# --- America/Santiago: fall back 2026-04-05 00:00 -> 04-04 23:00, spring 2026-09-06 00:00 -> 01:00


def test_santiago_midnight_in_the_gap_fires_at_one():
    assert fires("0 0 * * *", "America/Santiago", utc(2026, 9, 5), utc(2026, 9, 8)) == [
        ("2026-09-05 04:00", "2026-09-05 00:00-0400", None),
        ("2026-09-06 04:00", "2026-09-06 01:00-0300", "gap"),  # 00:00 did not exist
        ("2026-09-07 03:00", "2026-09-07 00:00-0300", None),
    ]


def test_santiago_the_hour_before_midnight_repeats_and_fires_once():
    assert fires("30 23 * * *", "America/Santiago", utc(2026, 4, 4), utc(2026, 4, 7)) == [
        ("2026-04-04 02:30", "2026-04-03 23:30-0300", None),
        ("2026-04-05 02:30", "2026-04-04 23:30-0300", "fold"),  # not again at 03:30 UTC
        ("2026-04-06 03:30", "2026-04-05 23:30-0400", None),
    ]


def test_santiago_hourly_keeps_real_elapsed_spacing_across_midnight():
    spring = fires("0 * * * *", "America/Santiago", utc(2026, 9, 6, 2), utc(2026, 9, 6, 6))
    assert [local for _, local, _ in spring] == [
        "2026-09-05 22:00-0400",
        "2026-09-05 23:00-0400",
        "2026-09-06 01:00-0300",
        "2026-09-06 02:00-0300",
    ]
    autumn = fires("0 * * * *", "America/Santiago", utc(2026, 4, 5, 1), utc(2026, 4, 5, 5))
    assert [local for _, local, _ in autumn] == [
        "2026-04-04 22:00-0300",
        "2026-04-04 23:00-0300",
        "2026-04-04 23:00-0400",
        "2026-04-05 00:00-0400",
    ]


# --- America/Havana: spring 2026-03-08 00:00 -> 01:00, fall back 2026-11-01 01:00 -> 00:00


def test_havana_midnight_transitions():
    assert fires("0 0 * * *", "America/Havana", utc(2026, 3, 7), utc(2026, 3, 10)) == [
        ("2026-03-07 05:00", "2026-03-07 00:00-0500", None),
        ("2026-03-08 05:00", "2026-03-08 01:00-0400", "gap"),
        ("2026-03-09 04:00", "2026-03-09 00:00-0400", None),
    ]
    assert fires("30 0 * * *", "America/Havana", utc(2026, 10, 31), utc(2026, 11, 3)) == [
        ("2026-10-31 04:30", "2026-10-31 00:30-0400", None),
        ("2026-11-01 04:30", "2026-11-01 00:30-0400", "fold"),
        ("2026-11-02 05:30", "2026-11-02 00:30-0500", None),
    ]


# --- Australia/Lord_Howe: 2026-10-04 02:00 -> 02:30 (+10:30 -> +11)


def test_lord_howe_half_hour_gap():
    assert fires("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 4)) == [
        ("2026-10-02 15:45", "2026-10-03 02:15+1030", None),
        ("2026-10-03 15:30", "2026-10-04 02:30+1100", "gap"),
    ]


def test_the_preview_marks_the_fire_times_a_transition_moved():
    schedule = Schedule(
        cron="30 2 * * *", timezone="Europe/Berlin", next_fire_at=utc(2026, 3, 27, 1, 30)
    )
    preview = schedule_next_fire_times(schedule=schedule, count=5)
    assert [(t.at.astimezone(zone("Europe/Berlin")).isoformat(), t.moved) for t in preview] == [
        ("2026-03-27T02:30:00+01:00", False),
        ("2026-03-28T02:30:00+01:00", False),
        ("2026-03-29T03:00:00+02:00", True),
        ("2026-03-30T02:30:00+02:00", False),
        ("2026-03-31T02:30:00+02:00", False),
    ]
    assert preview[2].nominal == datetime(2026, 3, 29, 2, 30)
