"""Reads on jobs and schedules. Visibility lives here: a user sees their own, staff see all."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, QuerySet
from django.utils import timezone

from jobplatform.errors import NotFound
from jobs import cron
from jobs.cron import FireTime
from jobs.models import Job, Schedule, ScheduleFiring


def job_list(*, user: AbstractBaseUser) -> QuerySet[Job]:
    jobs = Job.objects.select_related("owner")
    return jobs if user.is_staff else jobs.filter(owner=user)


# What a job list shows (jobs.api.serializers.job_summary_row_output), read as rows, not model
# instances: no Job and User object per job, and none of the JSON columns a list does not show
# (steps, outputs, result, error, and an input of up to 64 KiB: up to 32 MiB of JSON for a page of
# 500). docs/performance.md has the figures.
JOB_SUMMARY_COLUMNS = (
    "id", "name", "status", "queue", "priority", "attempts", "run_at", "schedule_id",
    "scheduled_for", "created_at", "started_at", "finished_at",
)  # fmt: skip


def job_summary_rows(*, user: AbstractBaseUser) -> QuerySet[Any]:
    """``job_list`` as dicts of JOB_SUMMARY_COLUMNS and ``owner_username``."""
    username = F(f"owner__{get_user_model().USERNAME_FIELD}")
    return job_list(user=user).values(*JOB_SUMMARY_COLUMNS, owner_username=username)


def job_get_visible(*, job_id: UUID, user: AbstractBaseUser) -> Job:
    """The job, if ``user`` may see it; otherwise NotFound, so others' ids are not disclosed."""
    try:
        return job_list(user=user).get(id=job_id)
    except Job.DoesNotExist:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}") from None


def schedule_list(*, user: AbstractBaseUser) -> QuerySet[Schedule]:
    schedules = Schedule.objects.select_related("owner")
    return schedules if user.is_staff else schedules.filter(owner=user)


def schedule_get_visible(*, schedule_id: UUID, user: AbstractBaseUser) -> Schedule:
    """The schedule, if ``user`` may see it; otherwise NotFound, as for jobs."""
    try:
        return schedule_list(user=user).get(id=schedule_id)
    except Schedule.DoesNotExist:
        raise NotFound("SCHEDULES.NOT_FOUND", f"no schedule {schedule_id}") from None


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
            recent[job.schedule_id].append(job)
    for jobs in recent.values():
        jobs.sort(key=lambda job: job.created_at, reverse=True)
    return recent


def schedule_recent_firings(*, schedule_id: UUID, limit: int = 20) -> list[ScheduleFiring]:
    return list(ScheduleFiring.objects.filter(schedule_id=schedule_id).order_by("-id")[:limit])
