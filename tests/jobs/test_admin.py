from __future__ import annotations

import pytest

from executions.models import Execution
from jobs.models import Job
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin):
    """An admin-role user (staff, not a superuser) logged in to the admin."""
    client.force_login(admin)
    return client


def test_operators_list_jobs_and_see_a_job_with_its_attempts(operator):
    job = JobFactory(name="nightly-report", status=Job.Status.RETRYING)
    Execution.objects.create(
        job=job, attempt=1, status="failed", worker="w1", started_at=job.created_at
    )
    listing = operator.get("/admin/jobs/job/?status__exact=retrying")
    assert listing.status_code == 200
    assert b"nightly-report" in listing.content
    page = operator.get(f"/admin/jobs/job/{job.id}/change/")
    assert page.status_code == 200
    assert b"w1" in page.content  # the attempt inline


def test_the_cancel_action_cancels_through_the_service(operator):
    queued = JobFactory(status=Job.Status.QUEUED)
    done = JobFactory(status=Job.Status.SUCCEEDED)
    response = operator.post(
        "/admin/jobs/job/",
        {"action": "cancel_jobs", "_selected_action": [str(queued.id), str(done.id)]},
        follow=True,
    )
    assert b"Cancelled 1 job(s)." in response.content
    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, done.status) == (Job.Status.CANCELLED, Job.Status.SUCCEEDED)
