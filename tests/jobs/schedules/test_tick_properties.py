"""Property tests: over any year, in any of these zones, no tick is fired twice or lost.

The fire times that jobs.cron computes (walking next_after from tick to tick, as the sweep
does, or resuming anywhere) are compared with an oracle that applies the documented policy by
brute force: it finds the zone's transitions by scanning the year hour by hour, and resolves every
local time the expression names by trying each UTC offset the zone used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from jobs.schedules.cron import Cron, CronError, Ticks, parse_cron, zone

ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/Santiago",  # transitions at midnight
    "America/Havana",  # transitions at midnight
    "America/Sao_Paulo",  # transitions at midnight until 2019
    "America/New_York",
    "America/St_Johns",  # -03:30
    "Asia/Tehran",  # transitions at midnight until 2022
    "Australia/Lord_Howe",  # a 30-minute shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # skipped 30 December 2011 altogether
    "Africa/Casablanca",  # DST suspended for Ramadan: four transitions a year
    "Antarctica/Troll",  # a two-hour shift
    "Asia/Kolkata",
    "UTC",
]


def _values(low: int, high: int, most: int) -> st.SearchStrategy[str]:
    return st.lists(st.integers(low, high), min_size=1, max_size=most, unique=True).map(
        lambda values: ",".join(map(str, sorted(values)))
    )


@st.composite
def expressions(draw: st.DrawFn) -> str:
    hour = draw(
        st.one_of(st.just("*"), _values(0, 23, 4), st.sampled_from(["*/6", "0-3", "22-23"]))
    )
    every_hour = hour == "*"
    minute = draw(st.one_of(_values(0, 59, 2 if every_hour else 3), st.just("*/20")))
    # Every-hour schedules fire thousands of times a year: a few months keep the oracle quick.
    month = draw(_values(1, 12, 2) if every_hour else st.one_of(st.just("*"), _values(1, 12, 4)))
    day = draw(st.one_of(st.just("*"), st.just("*/2"), _values(1, 31, 3)))
    weekday = draw(st.one_of(st.just("*"), st.just("1-5"), _values(0, 6, 2)))
    return f"{minute} {hour} {day} {month} {weekday}"


def _offset(tz, instant: datetime) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None  # an aware datetime has one
    return offset


def _transitions(tz, start: datetime, end: datetime) -> list[tuple[datetime, timedelta, timedelta]]:
    """(instant, offset before, offset after) of every change of UTC offset, by an hourly scan."""
    found = []
    at, before = start, _offset(tz, start)
    while at < end:
        later = at + timedelta(hours=1)
        after = _offset(tz, later)
        if after != before:
            low, high = int(at.timestamp()), int(later.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(tz, datetime.fromtimestamp(middle, UTC)) == before:
                    low = middle
                else:
                    high = middle
            found.append((datetime.fromtimestamp(high, UTC), before, after))
        at, before = later, after
    return found


def oracle(cron: Cron, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    """The fire times in [start, end) by the documented policy, computed the slow way."""
    tz = zone(tz_name)
    margin = timedelta(days=3)
    transitions = _transitions(tz, start - margin, end + margin)
    offsets = {_offset(tz, start - margin)} | {after for _, _, after in transitions}
    every_hour = len(cron.hours) == 24
    fire: set[datetime] = set()
    day = (start - margin).date()
    while day <= (end + margin).date():
        if cron.matches_date(day):
            for at in cron.times:
                local = datetime.combine(day, at)
                real = sorted(
                    instant
                    for offset in offsets
                    for instant in [(local - offset).replace(tzinfo=UTC)]
                    if instant.astimezone(tz).replace(tzinfo=None) == local
                )
                if real:
                    fire.update(real if every_hour else real[:1])
                elif not every_hour:  # in a gap: at the instant the gap ends
                    fire.update(
                        t
                        for t, before, after in transitions
                        if t.replace(tzinfo=None) + before <= local < t.replace(tzinfo=None) + after
                    )
        day += timedelta(days=1)
    return sorted(t for t in fire if start <= t < end)


def walk(ticks: Ticks, start: datetime, end: datetime) -> list[datetime]:
    """Tick after tick, as the sweep advances next_fire_at."""
    found = []
    tick = ticks.at_or_after(start)
    while tick is not None and tick.at < end:
        found.append(tick.at)
        tick = ticks.next_after(tick.at)
    return found


def _cron(expression: str) -> Cron:
    try:
        return parse_cron(expression)
    except CronError:
        assume(False)
        raise


@settings(max_examples=80, deadline=None)
@given(
    expression=expressions(),
    tz=st.sampled_from(ZONES),
    year=st.integers(1980, 2040),
    resume=st.lists(st.floats(0, 1, exclude_max=True), max_size=5),
)
# A fraction just below 1 used to land on `end` itself, outside the oracle's [start, end).
@example(expression="0 * * 1 *", tz="Europe/Berlin", year=1980, resume=[0.9999999999999998])
def test_over_any_year_no_tick_is_fired_twice_or_lost(expression, tz, year, resume):
    cron = _cron(expression)
    ticks = Ticks(cron, zone(tz))
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    expected = oracle(cron, tz, start, end)
    fired = walk(ticks, start, end)
    assert fired == expected
    assert len(set(fired)) == len(fired)  # strictly increasing: nothing twice
    # Resuming anywhere (an edit, a restart) finds the same next and previous ticks.
    for fraction in resume:
        # Inside the oracle's half-open year: the float product can round up to `end` itself.
        at = min(start + (end - start) * fraction, end - timedelta(microseconds=1))
        later = [t for t in expected if t > at]
        if later and later[0] < end - timedelta(days=1):
            assert ticks.next_after(at).at == later[0]
        earlier = [t for t in expected if t <= at]
        if earlier and earlier[-1] > start + timedelta(days=1):
            assert ticks.last_at_or_before(at).at == earlier[-1]


@settings(max_examples=25, deadline=None)
@given(
    expression=st.sampled_from(["* * * * *", "*/7 * * * *", "*/5 2 * * *", "*/3 0,23 * * *"]),
    tz=st.sampled_from(ZONES),
    year=st.integers(1980, 2040),
    which=st.integers(0, 3),
)
def test_dense_schedules_through_a_transition(expression, tz, year, which):
    """Minute-level schedules over the three days around one of the year's transitions."""
    cron = parse_cron(expression)
    start = datetime(year, 1, 1, tzinfo=UTC)
    transitions = _transitions(zone(tz), start, start.replace(year=year + 1))
    around = transitions[which % len(transitions)][0] if transitions else start
    window = (around - timedelta(days=1, hours=12), around + timedelta(days=1, hours=12))
    assert walk(Ticks(cron, zone(tz)), *window) == oracle(cron, tz, *window)


def test_the_oracle_agrees_with_hand_worked_berlin_examples():
    cron = parse_cron("30 2 * * *")
    start = datetime(2026, 3, 29, tzinfo=UTC)
    assert oracle(cron, "Europe/Berlin", start, start + timedelta(days=1)) == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    ]
    start = datetime(2026, 10, 25, tzinfo=UTC)
    assert oracle(cron, "Europe/Berlin", start, start + timedelta(days=1)) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    ]
    hourly = oracle(parse_cron("30 * * * *"), "Europe/Berlin", start, start + timedelta(hours=3))
    assert [t.hour for t in hourly] == [0, 1, 2]  # 02:30 twice, then 03:30
