"""Reads on schedules. Visibility as for jobs: a user sees their own and their teams', an admin
all."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from jobplatform.access import owned_by_visible
from jobplatform.errors import NotFound
from jobs.models import Job
from jobs.schedules import cron
from jobs.schedules.cron import FireTime
from jobs.schedules.models import Schedule, ScheduleFiring


def schedule_list(*, user: User) -> QuerySet[Schedule]:
    return owned_by_visible(Schedule.objects.select_related("owner"), user, "owner")


def schedule_get_visible(*, schedule_id: UUID, user: User) -> Schedule:
    """The schedule, if ``user`` may see it; otherwise NotFound, as for jobs."""
    try:
        return schedule_list(user=user).get(id=schedule_id)
    except Schedule.DoesNotExist:
        raise NotFound("SCHEDULES.NOT_FOUND", f"no schedule {schedule_id}") from None


def schedule_next_fire_at() -> datetime | None:
    """The earliest next_fire_at of all enabled schedules (the partial index schedule_due)."""
    return (
        Schedule.objects.filter(enabled=True, next_fire_at__isnull=False)
        .order_by("next_fire_at")
        .values_list("next_fire_at", flat=True)
        .first()
    )


def schedule_next_fire_times(
    *, schedule: Schedule, count: int = 5, now: datetime | None = None
) -> list[FireTime]:
    """The next ``count`` fire times: from next_fire_at, or, while paused, those a resume now
    would give. Each says whether a daylight-saving transition moved it."""
    now = now or timezone.now()
    ticks = cron.ticks(schedule.cron, schedule.timezone)
    since = schedule.next_fire_at or max(now, schedule.start_at or now)
    found: list[FireTime] = []
    tick = ticks.at_or_after(since)
    while tick is not None and len(found) < count:
        if schedule.end_at is not None and tick.at > schedule.end_at:
            break
        found.append(tick)
        tick = ticks.next_after(tick.at)
    return found


_RECENT_JOBS_SQL = """
SELECT recent.* FROM unnest(%s::uuid[]) AS s(id)
CROSS JOIN LATERAL (
    -- Each schedule's newest jobs from the partial index job_schedule_created, however many
    -- jobs it has made over the years.
    SELECT * FROM jobs_job WHERE schedule_id = s.id ORDER BY created_at DESC LIMIT %s
) AS recent
"""


def schedule_recent_jobs(
    *, schedule_ids: list[UUID], per_schedule: int = 5
) -> dict[UUID, list[Job]]:
    """The newest jobs of each schedule, newest first, in one query."""
    recent: dict[UUID, list[Job]] = {schedule_id: [] for schedule_id in schedule_ids}
    if schedule_ids:
        for job in Job.objects.raw(_RECENT_JOBS_SQL, [list(schedule_ids), per_schedule]):
            assert job.schedule_id is not None  # WHERE schedule_id = s.id
            recent[job.schedule_id].append(job)
    for jobs in recent.values():
        jobs.sort(key=lambda job: job.created_at, reverse=True)
    return recent


def schedule_recent_firings(*, schedule_id: UUID, limit: int = 20) -> list[ScheduleFiring]:
    return list(ScheduleFiring.objects.filter(schedule_id=schedule_id).order_by("-id")[:limit])
