"""One-time jobs at a future instant: PENDING in PostgreSQL until due, never a broker ETA
message; run_at may move, and the job be cancelled, while it is PENDING."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job
from jobs.services import job_release_due, job_reschedule
from tests.conftest import client_for
from tests.jobs.factories import JobFactory
from tests.jobs.test_dispatcher import listener
from tests.support import wait_for

LOG = [{"type": "log", "params": {"message": "later"}}]


def later(hours: float = 1) -> str:
    return (timezone.now() + timedelta(hours=hours)).isoformat()


@pytest.mark.django_db
def test_a_pending_job_can_be_moved(api, user):
    job = JobFactory(owner=user, run_at=timezone.now() + timedelta(hours=1))
    run_at = "2030-01-01T09:00:00+01:00"
    response = api.patch(f"/api/v1/jobs/{job.id}/", {"run_at": run_at}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["run_at"] == "2030-01-01T08:00:00Z"
    job.refresh_from_db()
    assert (job.status, job.run_at, job.version) == ("pending", datetime.fromisoformat(run_at), 1)


@pytest.mark.django_db
@pytest.mark.parametrize("status", sorted(Job.Status))
def test_run_at_moves_only_while_the_job_is_pending(api, user, status):
    job = JobFactory(owner=user, status=status)
    response = api.patch(f"/api/v1/jobs/{job.id}/", {"run_at": later()}, format="json")
    if status in lifecycle.RESCHEDULABLE:
        assert response.status_code == 200
    else:
        assert response.status_code == 409
        assert response.json()["error"] == {
            "code": "JOBS.NOT_PENDING",
            "message": f"run_at can change only while the job is pending; it is {status}",
            "details": {"status": status},
        }
        job.refresh_from_db()
        assert job.version == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"run_at": "2030-01-01T09:00:00"}, "JOBS.NAIVE_RUN_AT"),
        ({"run_at": "soon"}, "API.VALIDATION_ERROR"),
        ({"run_at": None}, "API.VALIDATION_ERROR"),
        ({"run_at": "2030-01-01T09:00:00Z", "priority": 9}, "API.VALIDATION_ERROR"),
        ({"priority": 9}, "API.VALIDATION_ERROR"),
    ],
)
def test_a_bad_change_is_a_400(api, user, body, code):
    job = JobFactory(owner=user)
    response = api.patch(f"/api/v1/jobs/{job.id}/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.django_db
def test_others_jobs_cannot_be_moved(api, admin):
    theirs = JobFactory(owner=admin)
    response = api.patch(f"/api/v1/jobs/{theirs.id}/", {"run_at": later()}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "JOBS.NOT_FOUND")
    assert (
        client_for(admin)
        .patch(f"/api/v1/jobs/{theirs.id}/", {"run_at": later()}, format="json")
        .status_code
        == 200
    )


@pytest.mark.django_db(transaction=True)
def test_moving_run_at_wakes_the_dispatchers_at_commit(user):
    job = JobFactory(owner=user, run_at=timezone.now() + timedelta(hours=1))
    with listener() as conn:
        with transaction.atomic():
            job_reschedule(job_id=job.id, run_at=timezone.now())
            assert list(conn.notifies(timeout=0.2)) == []
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1


@pytest.mark.django_db
def test_a_cancelled_future_job_is_never_released(api, user):
    job = JobFactory(owner=user, run_at=timezone.now() + timedelta(hours=1))
    assert api.post(f"/api/v1/jobs/{job.id}/cancel/").json()["status"] == "cancelled"
    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(seconds=1))
    assert job_release_due(limit=10).jobs == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_future_job_waits_in_postgresql_and_runs_when_moved_to_now(platform, api, http_target):
    key = uuid.uuid4().hex
    steps = [{"type": "http", "params": {"url": f"{http_target.url}/ok/{key}"}}]
    future = api.post(
        "/api/v1/jobs/", {"name": "f", "steps": steps, "run_at": later(2)}, format="json"
    )
    # A job due now, submitted after it, runs: the dispatcher has looked since, and left the
    # future job PENDING, with no message on the broker (queued_at is set only on release).
    now_job = api.post("/api/v1/jobs/", {"name": "n", "steps": LOG}, format="json").json()
    wait_for(lambda: Job.objects.get(id=now_job["id"]).status == "succeeded", what="the due job")
    job = Job.objects.get(id=future.json()["id"])
    assert (job.status, job.queued_at) == ("pending", None)
    moved_to = timezone.now() + timedelta(milliseconds=300)
    response = api.patch(f"/api/v1/jobs/{job.id}/", {"run_at": moved_to.isoformat()}, format="json")
    assert response.status_code == 200
    job = wait_for(
        lambda: (j := Job.objects.get(id=job.id)).status == "succeeded" and j, what="the moved job"
    )
    assert job.started_at >= moved_to
    assert http_target.count(f"/ok/{key}") == 1
