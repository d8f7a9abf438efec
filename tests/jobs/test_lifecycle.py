from __future__ import annotations

import pytest

from jobs import lifecycle
from jobs.models import Job
from jobs.services import job_cancel, job_release_due
from tests.jobs.factories import JobFactory

ALL = sorted(Job.Status)


def test_every_state_is_either_active_or_terminal():
    assert set(Job.Status) == lifecycle.ACTIVE | lifecycle.TERMINAL
    assert not lifecycle.ACTIVE & lifecycle.TERMINAL


@pytest.mark.django_db
@pytest.mark.parametrize("status", ALL)
def test_cancel_moves_only_unfinished_jobs(status):
    job = JobFactory(status=status)
    assert job_cancel(job_id=job.id) is (status in lifecycle.CANCELLABLE)
    job.refresh_from_db()
    expected = Job.Status.CANCELLED if status in lifecycle.CANCELLABLE else status
    assert job.status == expected


@pytest.mark.django_db
@pytest.mark.parametrize("status", ALL)
def test_release_takes_only_due_pending_jobs(status):
    job = JobFactory(status=status)
    released = job_release_due(limit=10)
    assert [r.id for r in released] == ([job.id] if status in lifecycle.RELEASABLE else [])
    job.refresh_from_db()
    assert job.status == (Job.Status.QUEUED if status in lifecycle.RELEASABLE else status)


@pytest.mark.django_db
def test_release_leaves_future_jobs_pending_and_takes_the_oldest_first():
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    future = JobFactory(run_at=now + timedelta(hours=1))
    newer = JobFactory(run_at=now - timedelta(seconds=1))
    older = JobFactory(run_at=now - timedelta(seconds=10))
    assert [r.id for r in job_release_due(limit=1)] == [older.id]
    assert [r.id for r in job_release_due(limit=10)] == [newer.id]
    future.refresh_from_db()
    assert future.status == Job.Status.PENDING
