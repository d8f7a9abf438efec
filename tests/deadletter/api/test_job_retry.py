"""POST /api/v1/jobs/{id}/retry/: a failed or cancelled job back to the queue, closing its open
dead letter."""

from __future__ import annotations

import pytest

from deadletter.models import DeadLetter
from jobs.models import Job
from tests.conftest import client_for
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def retry(api, job, body=None):
    return api.post(f"/api/v1/jobs/{job.id}/retry/", body or {}, format="json")


def test_retrying_a_failed_job_closes_its_dead_letter_with_the_overrides(api, user):
    dead = DeadLetterFactory(job=FailedJobFactory(owner=user, next_step=1, step_outputs=[{"a": 1}]))
    response = retry(api, dead.job, {"note": "fixed upstream", "max_retries": 7, "from_step": 0})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["max_retries"], body["next_step"]) == ("pending", 7, 0)
    dead.refresh_from_db()
    assert (dead.state, dead.note, dead.resolved_by) == ("retried", "fixed upstream", user)
    assert [a.kind for a in dead.actions.order_by("id")] == ["edit", "retry"]
    # Retried already: the job is pending, and its entry is closed.
    again = retry(api, dead.job)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "JOBS.NOT_RETRYABLE"
    assert again.json()["error"]["details"] == {"status": "pending"}


def test_a_cancelled_job_is_retried_from_where_it_stopped(api, user):
    job = JobFactory(owner=user, status=Job.Status.CANCELLED, attempts=2, next_step=1)
    response = retry(api, job, {"input": {"again": True}})
    assert response.status_code == 200, response.content
    job.refresh_from_db()
    assert (job.status, job.input, job.next_step, job.retry_base) == (
        "pending",
        {"again": True},
        1,
        2,
    )
    assert not DeadLetter.objects.filter(job=job).exists()


@pytest.mark.parametrize(
    ("status", "body", "http", "code"),
    [
        (Job.Status.SUCCEEDED, {}, 409, "JOBS.NOT_RETRYABLE"),
        (Job.Status.RUNNING, {}, 409, "JOBS.NOT_RETRYABLE"),
        (Job.Status.FAILED, {"from_step": 3}, 400, "JOBS.INVALID_FROM_STEP"),
        (Job.Status.FAILED, {"max_retries": -1}, 400, "JOBS.INVALID_RETRY_POLICY"),
        (Job.Status.FAILED, {"max_retry": 1}, 400, "API.VALIDATION_ERROR"),
    ],
)
def test_a_retry_that_cannot_be_done_is_refused_and_changes_nothing(
    api, user, status, body, http, code
):
    job = JobFactory(owner=user, status=status, attempts=1)
    dead = DeadLetterFactory(job=job) if status == Job.Status.FAILED else None
    response = retry(api, job, body)
    assert response.status_code == http, response.content
    assert response.json()["error"]["code"] == code
    job.refresh_from_db()
    assert job.status == status
    if dead is not None:
        dead.refresh_from_db()
        assert dead.state == "open"


def test_only_who_may_see_and_change_the_job_may_retry_it(api, user, viewer):
    theirs = FailedJobFactory()
    assert retry(api, theirs).json()["error"]["code"] == "JOBS.NOT_FOUND"
    mine = FailedJobFactory(owner=viewer)
    assert retry(client_for(viewer), mine).status_code == 403
    assert Job.objects.get(id=mine.id).status == Job.Status.FAILED


def test_a_retry_counts_against_the_owners_cap_like_a_submission(api, user, settings):
    """A retried job is unfinished again: past its owner's cap the retry is a 429 and changes
    nothing; once a job finishes, it goes through."""
    settings.JOBPLATFORM_ADMISSION_RECOUNT = 0  # count anew for every request
    settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 2
    dead = DeadLetterFactory(job=FailedJobFactory(owner=user))
    cancelled = JobFactory(owner=user, status=Job.Status.CANCELLED)
    waiting = JobFactory.create_batch(2, owner=user)  # pending: the cap is reached
    for job in (dead.job, cancelled):
        response = retry(api, job)
        assert response.status_code == 429, response.content
        assert response["Retry-After"]
        assert response.json()["error"]["details"] == {
            "scope": "owner",
            "limit": 2,
            "unfinished": 2,
            "asked": 1,
        }
    dead.refresh_from_db()
    assert (dead.state, dead.job.status) == ("open", Job.Status.FAILED)
    # A job that cannot be retried is told so, not that the cap is full.
    assert retry(api, waiting[0]).json()["error"]["code"] == "JOBS.NOT_RETRYABLE"
    Job.objects.filter(id=waiting[0].id).update(status=Job.Status.SUCCEEDED)
    assert retry(api, dead.job).status_code == 200
    assert retry(api, cancelled).status_code == 429  # the retry took the room
