"""The cron parser: Vixie syntax, its day-of-month/day-of-week rule, and clear errors."""

from __future__ import annotations

from datetime import date

import pytest

from jobs.schedules.cron import CronError, UnknownTimezone, parse_cron, zone

ALL_MINUTES = tuple(range(60))


@pytest.mark.parametrize(
    ("expression", "minutes", "hours"),
    [
        ("* * * * *", ALL_MINUTES, tuple(range(24))),
        ("*/15 * * * *", (0, 15, 30, 45), tuple(range(24))),
        ("5/20 9-17/4 * * *", (5, 25, 45), (9, 13, 17)),
        ("0,30 2 * * *", (0, 30), (2,)),
        ("  0   2  * *  * ", (0,), (2,)),
        ("@hourly", (0,), tuple(range(24))),
        ("@daily", (0,), (0,)),
    ],
)
def test_minutes_and_hours(expression, minutes, hours):
    cron = parse_cron(expression)
    assert (cron.minutes, cron.hours) == (minutes, hours)


def test_names_ranges_and_sunday_as_seven():
    cron = parse_cron("0 0 * jan-mar,DEC sat-7")
    assert cron.months == {1, 2, 3, 12}
    assert cron.weekdays == {6, 0}
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * sun").weekdays == {0}


@pytest.mark.parametrize(
    ("expression", "day", "fires"),
    [
        # Both restricted: either matches (the 13th, or a Friday).
        ("0 0 13 * 5", date(2026, 2, 13), True),  # Friday the 13th
        ("0 0 13 * 5", date(2026, 3, 13), True),  # the 13th, a Friday too
        ("0 0 13 * 5", date(2026, 3, 6), True),  # a Friday
        ("0 0 13 * 5", date(2026, 3, 12), False),
        # One starts with *: both must match.
        ("0 0 */2 * 5", date(2026, 3, 6), False),  # a Friday, but the 6th is even
        ("0 0 * * 5", date(2026, 3, 6), True),
        ("0 0 1 * *", date(2026, 3, 1), True),
        ("0 0 29 2 *", date(2028, 2, 29), True),
        ("0 0 * 2 *", date(2026, 3, 1), False),
    ],
)
def test_the_day_rule(expression, day, fires):
    assert parse_cron(expression).matches_date(day) is fires


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "five fields"),
        ("* * * *", "not 4"),
        ("0 * * * * *", "not 6"),
        ("60 * * * *", r"minute: .*60 > 59.*allowed: 0-59"),
        ("* 24 * * *", r"hour: .*24 > 23.*allowed: 0-23"),
        ("* * 0 * *", r"day of month: .*0 < 1.*allowed: 1-31"),
        ("* * * 13 *", r"month: .*13 > 12.*allowed: 1-12"),
        ("* * * * 8", r"day of week: .*8 > 7.*allowed: 0-7"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "runs backwards"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("* * * foo *", "month: 'foo' is not a number"),
        ("mon * * * *", "minute: 'mon' is not a number"),  # names only where the field has them
        ("1-2-3 * * * *", "'1-2-3' is not a number"),
        ("*/5/2 * * * *", "'\\*/5/2' is not a number"),
        ("0 0 30 2 *", "matches no date"),
        ("0 0 31 4,6,9,11 *", "matches no date"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression, says):
    with pytest.raises(CronError, match=says):
        parse_cron(expression)


def test_timezones_are_iana_names():
    assert str(zone("Europe/Berlin")) == "Europe/Berlin"
    for name in ("Mars/Olympus", "", "../../etc/passwd", "europe/berlin"):
        with pytest.raises(UnknownTimezone):
            zone(name)
