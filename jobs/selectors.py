"""Reads on jobs. Visibility lives here: a user sees their own jobs, staff see every job."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from jobplatform.errors import NotFound
from jobs.models import Job


def job_list(*, user: AbstractBaseUser) -> QuerySet[Job]:
    jobs = Job.objects.select_related("owner")
    return jobs if user.is_staff else jobs.filter(owner=user)


def job_get_visible(*, job_id: UUID, user: AbstractBaseUser) -> Job:
    """The job, if ``user`` may see it; otherwise NotFound, so others' ids are not disclosed."""
    try:
        return job_list(user=user).get(id=job_id)
    except Job.DoesNotExist:
        raise NotFound("JOBS.NOT_FOUND", f"no job {job_id}") from None
