from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from jobs.models import Schedule
from jobs.schedules.firing import FireResult, schedules_fire_due
from jobs.schedules.services import ScheduleSpec, schedule_create
from jobs.services import JobSpec

# A queue no test dispatcher serves: jobs made by committed firings stay PENDING for inspection.
PROBE_QUEUE = "dispatch-probe"


def template(**fields: Any) -> JobSpec:
    fields.setdefault("name", "tick")
    fields.setdefault("steps", [{"type": "log", "params": {"message": "tick"}}])
    return JobSpec(**fields)


def make_schedule(owner: Any, *, now: datetime, **fields: Any) -> Schedule:
    """A schedule created at ``now`` (forged time), every five minutes in UTC unless told."""
    fields.setdefault("name", f"schedule-{uuid.uuid4().hex[:8]}")
    fields.setdefault("cron", "*/5 * * * *")
    fields.setdefault("job", template())
    return schedule_create(owner=owner, spec=ScheduleSpec(**fields), now=now)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fire(schedule: Schedule, *, now: datetime | None = None) -> FireResult:
    """A dispatcher's sweep at ``now`` (forged time), and what it fired of ``schedule``."""
    return schedules_fire_due(now=now).of(schedule.id)
