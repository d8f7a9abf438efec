"""Reads on jobs. Visibility lives here: a user sees their own jobs and their teams', an admin
all (jobplatform.access)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import F, QuerySet

from jobplatform.access import owned_by_visible
from jobplatform.errors import NotFound
from jobs.models import Job


def job_list(*, user: User) -> QuerySet[Job]:
    return owned_by_visible(Job.objects.select_related("owner"), user, "owner")


# What a job list shows (jobs.api.serializers.job_summary_row_output), read as rows, not model
# instances: no Job and User object per job, and none of the JSON columns a list does not show
# (steps, outputs, result, error, and an input of up to 64 KiB: up to 32 MiB of JSON for a page of
# 500). docs/performance.md has the figures.
JOB_SUMMARY_COLUMNS = (
    "id", "name", "status", "queue", "priority", "attempts", "run_at", "schedule_id",
    "scheduled_for", "created_at", "started_at", "finished_at",
)  # fmt: skip


def job_summary_rows(*, user: User) -> QuerySet[Job, dict[str, Any]]:
    """``job_list`` as dicts of JOB_SUMMARY_COLUMNS and ``owner_username``."""
    username = F(f"owner__{get_user_model().USERNAME_FIELD}")
    rows: QuerySet[Job, dict[str, Any]] = job_list(user=user).values(
        *JOB_SUMMARY_COLUMNS, owner_username=username
    )
    return rows


def job_get_visible(*, job_id: UUID, user: User) -> Job:
    """The job, if ``user`` may see it; otherwise NotFound, so others' ids are not disclosed."""
    try:
        return job_list(user=user).get(id=job_id)
    except Job.DoesNotExist:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}") from None
