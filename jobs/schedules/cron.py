"""Cron expressions and the instants they fire at in a timezone, daylight saving included.

Beat only wakes the schedules up; which instants a schedule fires at is decided here, so the
daylight-saving policy (docs/schedules.md) is ours to guarantee and to test:

- A schedule whose hour field covers every hour (``* * * * *``, ``*/15 * * * *``, ``0 * * * *``)
  keeps real elapsed spacing: it fires at every instant the local wall clock shows a matching time.
  A time skipped by the spring-forward gap is never shown, so it does not fire; a time repeated by
  the fall-back fold is shown twice, so it fires twice (an hour of real time apart).
- Any other schedule (``30 2 * * *``, ``0 9 * * 1-5``) names wall-clock times, and each fires once:
  a time in the gap at the first valid instant after it (the end of the gap), a time in the fold
  at its first occurrence. Ticks that land on one instant (several gap times, or a gap time and
  the time the gap ends at) are one firing.

Fire times are UTC datetimes. Fields follow Vixie cron: ``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``,
``a/n``, lists, month and weekday names, weekday 0 or 7 for Sunday, the ``@daily``-style macros,
and when both day-of-month and day-of-week are restricted a day matching either fires. The fields
are expanded by Celery's ``crontab_parser``; the daylight-saving resolution below is ours.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from celery.schedules import crontab_parser

__all__ = [
    "Cron",
    "CronError",
    "FireTime",
    "Ticks",
    "UnknownTimezone",
    "parse_cron",
    "ticks",
    "zone",
]


class CronError(ValueError):
    """The expression is not a valid cron expression; the message says why."""


class UnknownTimezone(ValueError):
    """Not an IANA timezone name."""


_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]

    @property
    def shape(self) -> re.Pattern[str]:
        """One part of the field: ``*``, ``a`` or ``a-b``, each with an optional ``/step``."""
        value = r"\d+" + "".join(f"|{n}" for n in self.names)
        return re.compile(
            rf"(?P<first>\*|{value})(?:-(?P<last>{value}))?(?:/(?P<step>\d+))?", re.IGNORECASE
        )

    def number(self, token: str) -> int:
        return int(token) if token.isdigit() else self.names[token.lower()]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _WEEKDAYS),
)


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    # Vixie cron: when day of month and day of week are both restricted (neither starts with *),
    # a day matching either fires; otherwise both must match.
    day_or: bool
    times: tuple[time, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = tuple(time(h, m) for h in self.hours for m in self.minutes)
        object.__setattr__(self, "times", times)

    @property
    def every_hour(self) -> bool:
        """Fires in every hour: real elapsed spacing across DST transitions (see module doc)."""
        return len(self.hours) == 24

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)


def parse_cron(expression: str) -> Cron:
    """A five-field cron expression (or a macro), or CronError naming what is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("a cron expression has five fields: minute hour day month weekday")
    text = " ".join(expression.split())
    fields = _MACROS.get(text.lower(), text).split(" ")
    if len(fields) != 5:
        raise CronError(
            f"a cron expression has five fields (minute hour day month weekday), not {len(fields)}"
        )
    values = [_parse_field(raw, spec) for raw, spec in zip(fields, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = values
    weekdays = {d % 7 for d in weekdays}  # 7 is Sunday too
    cron = Cron(
        expression=text,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        day_or=not fields[2].startswith("*") and not fields[4].startswith("*"),
    )
    if not any(cron.matches_date(date(2000, 1, 1) + timedelta(days=n)) for n in range(366 * 8)):
        raise CronError(f"{text!r} matches no date (e.g. day 31 of a month that has 30)")
    return cron


def _parse_field(raw: str, spec: _Field) -> set[int]:
    """The values of one field, expanded by Celery's ``crontab_parser``.

    Two rules are checked here first, because the parser has its own dialect: each part of the
    field has Vixie cron's shape (names only where the field has names: the parser reads any
    word as a weekday), and a range must not run backwards (the parser wraps it around).
    ``a/n`` (Vixie: from a to the end, every n) becomes ``a-<last>/n``, which the parser knows.
    """
    parts = []
    for part in raw.split(","):
        match = spec.shape.fullmatch(part)
        if match is None:
            raise CronError(f"{spec.name}: {part!r} is not a number, a range or */step")
        first, last, step = match.group("first", "last", "step")
        if last is not None and first != "*" and spec.number(first) > spec.number(last):
            raise CronError(f"{spec.name}: the range {part!r} runs backwards")
        if step is not None and int(step) == 0:
            raise CronError(f"{spec.name}: the step in {part!r} must be a whole number above 0")
        if first != "*" and last is None and step is not None:
            part = f"{first}-{spec.high}/{step}"
        parts.append(part)
    try:
        return set(crontab_parser(spec.high - spec.low + 1, spec.low).parse(",".join(parts)))
    except (ValueError, crontab_parser.ParseException) as exc:
        raise CronError(f"{spec.name}: {exc} (allowed: {spec.low}-{spec.high})") from None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name`` (e.g. ``Europe/Berlin``), or UnknownTimezone."""
    if not isinstance(name, str) or name not in _zone_names():
        raise UnknownTimezone(f"{name!r} is not an IANA timezone name, e.g. Europe/Berlin")
    return ZoneInfo(name)


@dataclass(frozen=True)
class FireTime:
    """One firing: the UTC instant, the local time the cron named, and how DST changed it."""

    at: datetime  # UTC
    nominal: datetime  # naive local wall-clock time the expression matched
    # None; "gap": the nominal time did not exist (spring forward), so it fires at the end of the
    # gap; "fold": the nominal time occurred twice and this is its first occurrence (the only
    # one, unless the schedule runs every hour); "fold_second": the second occurrence.
    transition: str | None = None

    @property
    def moved(self) -> bool:
        """A transition moved it away from the time the expression names."""
        return self.transition == "gap"


_MICROSECOND = timedelta(microseconds=1)
# Dates scanned for the next match: a 29 February may be eight years away (2096 -> 2104).
_SEARCH_DAYS = 366 * 9
# Ticks of one local date can precede those of the date before when a fold crosses midnight; the
# tz database's transitions are days apart and jump at most one day, so two dates either side of
# the one found are enough to be sure no earlier instant hides in a neighbouring date.
_NEIGHBOURS = 2


class Ticks:
    """The fire times of ``cron`` in ``tz``: a strictly increasing sequence of UTC instants."""

    def __init__(self, cron: Cron, tz: ZoneInfo) -> None:
        self.cron = cron
        self.tz = tz

    def next_after(self, instant: datetime) -> FireTime | None:
        """The first fire time strictly after ``instant`` (None if there is none before 9999)."""
        start = _wall(instant, self.tz).date()
        best: FireTime | None = None
        horizon: date | None = None
        for offset in range(-_NEIGHBOURS, _SEARCH_DAYS):
            try:
                day = start + timedelta(days=offset)
            except OverflowError:
                break
            if horizon is not None and day > horizon:
                break
            if not self.cron.matches_date(day):
                continue
            ticks = _day_ticks(self.cron, self.tz, day)
            index = bisect.bisect_right(ticks, instant, key=_at)
            if index < len(ticks) and (best is None or ticks[index].at < best.at):
                best = ticks[index]
                horizon = horizon or day + timedelta(days=_NEIGHBOURS)
        return best

    def at_or_after(self, instant: datetime) -> FireTime | None:
        return self.next_after(instant - _MICROSECOND)

    def last_at_or_before(self, instant: datetime) -> FireTime | None:
        """The last fire time at or before ``instant``."""
        start = _wall(instant, self.tz).date()
        best: FireTime | None = None
        horizon: date | None = None
        for offset in range(_NEIGHBOURS, -_SEARCH_DAYS, -1):
            try:
                day = start + timedelta(days=offset)
            except OverflowError:
                break
            if horizon is not None and day < horizon:
                break
            if not self.cron.matches_date(day):
                continue
            ticks = _day_ticks(self.cron, self.tz, day)
            index = bisect.bisect_right(ticks, instant, key=_at) - 1
            if index >= 0 and (best is None or ticks[index].at > best.at):
                best = ticks[index]
                horizon = horizon or day - timedelta(days=_NEIGHBOURS)
        return best

    def between(self, start: datetime, end: datetime) -> Iterator[FireTime]:
        """Fire times ``t`` with ``start <= t <= end``, in order (lazily: stop when you like)."""
        tick = self.at_or_after(start)
        while tick is not None and tick.at <= end:
            yield tick
            tick = self.next_after(tick.at)


def _at(tick: FireTime) -> datetime:
    return tick.at


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


@lru_cache(maxsize=512)
def _day_ticks(cron: Cron, tz: ZoneInfo, day: date) -> tuple[FireTime, ...]:
    """The fire times whose nominal time falls on local date ``day``, sorted, one per instant."""
    midnight = datetime.combine(day, time())
    nominals = [datetime.combine(day, t) for t in cron.times]
    offset = _constant_offset(tz, midnight)
    if offset is not None:  # no transition today: local time is UTC shifted by one offset
        return tuple(FireTime(at=(n - offset).replace(tzinfo=UTC), nominal=n) for n in nominals)
    merged: dict[datetime, FireTime] = {}
    for nominal in nominals:
        for tick in _resolve(nominal, tz, elapsed=cron.every_hour):
            earlier = merged.get(tick.at)
            # Nominal times that land on one instant (gap times, and the time the gap ends at)
            # are one firing: the first keeps its nominal time, marked moved if any of them was.
            if earlier is None:
                merged[tick.at] = tick
            elif tick.moved and not earlier.moved:
                merged[tick.at] = FireTime(at=tick.at, nominal=earlier.nominal, transition="gap")
    return tuple(sorted(merged.values(), key=_at))


def _constant_offset(tz: ZoneInfo, midnight: datetime) -> timedelta | None:
    """The UTC offset of the whole local day starting at ``midnight``, or None if it changes.

    A day with no transition has one offset at both ends, each unambiguous. (Two transitions on
    one day would escape this test; the tz database has none: they are at least days apart.)
    """
    offsets = {
        local.replace(tzinfo=tz, fold=fold).utcoffset()
        for local in (midnight, midnight + timedelta(days=1))
        for fold in (0, 1)
    }
    return offsets.pop() if len(offsets) == 1 else None


def _resolve(nominal: datetime, tz: ZoneInfo, *, elapsed: bool) -> list[FireTime]:
    """The instants a nominal local time fires at, by the DST policy."""
    candidates = {nominal.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)}
    real = sorted(i for i in candidates if _wall(i, tz) == nominal)
    if len(real) == 1:
        return [FireTime(at=real[0], nominal=nominal)]
    if len(real) == 2:  # the fold: the time occurred twice
        first = FireTime(at=real[0], nominal=nominal, transition="fold")
        if elapsed:
            return [first, FireTime(at=real[1], nominal=nominal, transition="fold_second")]
        return [first]
    if elapsed:  # the gap: the clock never showed this time
        return []
    before, after = sorted(candidates)
    return [FireTime(at=_transition(before, after, tz), nominal=nominal, transition="gap")]


def _transition(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant the UTC offset changes between ``before`` and ``after`` (to the second)."""
    offset = before.astimezone(tz).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


@lru_cache(maxsize=256)
def ticks(expression: str, timezone: str) -> Ticks:
    """The fire times of a stored schedule (its expression and zone were validated when saved)."""
    return Ticks(parse_cron(expression), zone(timezone))
