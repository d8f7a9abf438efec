"""Flow control through the REST API, without a worker: admission control, queues, limits,
concurrency keys on submission, and why a job waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobplatform.errors import TooManyRequests
from jobplatform.roles import Role
from jobs.models import Hold, Job, OwnerQuota, Queue
from jobs.services.admission import Admission
from tests.conftest import client_for
from tests.factories import with_role
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db

STEPS = [{"type": "log", "params": {"message": "hi"}}]
JOB = {"name": "n", "steps": STEPS}


@pytest.fixture
def exact(settings):
    """Admission counts anew for every submission, so a test sees each job at once."""
    settings.JOBPLATFORM_ADMISSION_RECOUNT = 0
    return settings


def error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_a_submission_past_the_owners_cap_is_refused_with_429_and_retry_after(api, exact):
    exact.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 3
    exact.JOBPLATFORM_ADMISSION_RETRY_AFTER = 7
    for _ in range(3):
        assert api.post("/api/v1/jobs/", JOB, format="json").status_code == 201
    response = api.post("/api/v1/jobs/", JOB, format="json")
    body = error(response, 429)
    assert response["Retry-After"] == "7"
    assert body["code"] == "JOBS.TOO_MANY_UNFINISHED"
    assert body["details"] == {"scope": "owner", "limit": 3, "unfinished": 3, "asked": 1}
    # Finished jobs make room; another owner has a cap of its own.
    Job.objects.filter(id=Job.objects.first().id).update(status=Job.Status.SUCCEEDED)
    assert api.post("/api/v1/jobs/", JOB, format="json").status_code == 201
    other = client_for(with_role(JobFactory().owner, Role.OPERATOR))
    assert other.post("/api/v1/jobs/", JOB, format="json").status_code == 201


def test_a_bulk_submission_past_a_cap_is_refused_whole(api, user, exact):
    exact.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 5
    JobFactory.create_batch(3, owner=user)
    response = api.post("/api/v1/jobs/bulk/", {"jobs": [JOB] * 3}, format="json")
    assert error(response, 429)["details"]["unfinished"] == 3
    assert Job.objects.filter(owner=user).count() == 3  # none of the three
    assert api.post("/api/v1/jobs/bulk/", {"jobs": [JOB] * 2}, format="json").status_code == 201


def test_the_platform_cap_counts_every_owner(api, exact):
    exact.JOBPLATFORM_MAX_UNFINISHED = 2
    JobFactory.create_batch(2)
    body = error(api.post("/api/v1/jobs/", JOB, format="json"), 429)
    assert (body["code"], body["details"]["scope"]) == ("JOBS.TOO_MANY_UNFINISHED", "platform")


def test_an_owners_quota_replaces_the_default_cap(api, user, exact):
    exact.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 100
    OwnerQuota.objects.create(owner=user, max_unfinished=1)
    assert api.post("/api/v1/jobs/", JOB, format="json").status_code == 201
    assert error(api.post("/api/v1/jobs/", JOB, format="json"), 429)["details"]["limit"] == 1


def test_an_idempotent_repeat_is_answered_past_the_cap(api, exact):
    exact.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 1
    first = api.post("/api/v1/jobs/", JOB, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/v1/jobs/", JOB, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_admission_trusts_its_count_for_a_while_and_adds_its_own_submissions(user, settings):
    """Between recounts a process adds what it admitted, so it alone cannot pass a cap; jobs
    finished meanwhile are seen at the next recount."""
    settings.JOBPLATFORM_ADMISSION_RECOUNT = 10
    settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 3
    now = [0.0]
    admission = Admission(clock=lambda: now[0])
    jobs = JobFactory.create_batch(2, owner=user)
    admission.check(owner_id=user.pk, count=1)
    admission.admitted(owner_id=user.pk, count=1)  # not stored: only counted
    with pytest.raises(TooManyRequests, match="limit is 3"):
        admission.check(owner_id=user.pk, count=1)
    Job.objects.filter(id=jobs[0].id).update(status=Job.Status.SUCCEEDED)
    now[0] = 9.0
    with pytest.raises(TooManyRequests, match="limit is 3"):
        admission.check(owner_id=user.pk, count=1)
    now[0] = 10.5  # recounted: one of the two finished, and the third was never stored
    admission.check(owner_id=user.pk, count=2)


def test_limits_show_the_callers_caps_and_usage(api, user, settings):
    settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 50
    settings.JOBPLATFORM_MAX_UNFINISHED = 1000
    JobFactory.create_batch(2, owner=user)
    JobFactory(owner=user, status=Job.Status.SUCCEEDED)
    OwnerQuota.objects.create(owner=user, weight=3)
    response = api.get("/api/v1/limits/")
    assert response.status_code == 200
    assert response.json() == {
        "max_unfinished": 50,
        "unfinished": 2,
        "weight": 3,
        "platform_max_unfinished": 1000,
        "max_bulk_jobs": settings.JOBPLATFORM_MAX_BULK_JOBS,
        "retry_after": settings.JOBPLATFORM_ADMISSION_RETRY_AFTER,
    }


def test_a_job_carries_its_concurrency_key(api):
    body = {**JOB, "concurrency_key": "customer:42", "max_concurrency": 2}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["concurrency_key"], data["max_concurrency"]) == ("customer:42", 2)
    job = Job.objects.get(id=data["id"])
    assert (job.concurrency_key, job.max_concurrency, job.hold) == ("customer:42", 2, "")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"concurrency_key": ""}, "JOBS.INVALID_CONCURRENCY_KEY"),
        ({"concurrency_key": "k" * 201}, "JOBS.INVALID_CONCURRENCY_KEY"),
        ({"concurrency_key": "k", "max_concurrency": 0}, "JOBS.INVALID_MAX_CONCURRENCY"),
        ({"max_concurrency": 3}, "JOBS.INVALID_MAX_CONCURRENCY"),
        ({"concurrency_key": 42}, "API.VALIDATION_ERROR"),
        ({"concurrency_key": "k", "max_concurrency": "2"}, "API.VALIDATION_ERROR"),
    ],
)
def test_a_bad_concurrency_key_is_a_400(api, fields, code):
    assert error(api.post("/api/v1/jobs/", {**JOB, **fields}, format="json"), 400)["code"] == code


# --- queues ------------------------------------------------------------------------------------


def test_everyone_reads_the_queues_and_their_state(api, user, settings):
    settings.JOBPLATFORM_QUEUE_MAX_IN_FLIGHT = 0
    JobFactory(owner=user, queue="flow", status=Job.Status.RUNNING)
    JobFactory(owner=user, queue="flow", status=Job.Status.QUEUED)
    response = api.get("/api/v1/queues/")
    assert response.status_code == 200
    queues = {q["name"]: q for q in response.json()["results"]}
    assert list(queues) == settings.JOBPLATFORM_QUEUES
    flow = queues["flow"]
    assert {k: flow[k] for k in ("paused", "max_in_flight", "queued", "running")} == {
        "paused": False,
        "max_in_flight": None,
        "queued": 1,
        "running": 1,
    }
    assert flow["max_queued"] == settings.JOBPLATFORM_DISPATCH_MAX_QUEUED
    assert flow["links"]["pause"].endswith("/api/v1/queues/flow/pause/")


def test_operators_pause_and_resume_a_queue_and_only_admins_cap_it(api, admin, viewer):
    """A viewer reads; an operator (api) pauses and resumes, but is refused the cap."""
    watcher = client_for(viewer)
    assert watcher.get("/api/v1/queues/flow/").status_code == 200
    for response in (
        watcher.post("/api/v1/queues/flow/pause/"),
        watcher.post("/api/v1/queues/flow/resume/"),
    ):
        body = error(response, 403)
        assert (body["code"], body["details"]["permission"]) == (
            "AUTH.PERMISSION_DENIED",
            "jobs.pause_queue",
        )
    assert not Queue.objects.filter(name="flow", paused=True).exists()
    paused = api.post("/api/v1/queues/flow/pause/").json()
    assert paused["paused"] is True and paused["paused_at"]
    assert api.post("/api/v1/queues/flow/pause/").json()["paused"] is True  # idempotent
    assert api.post("/api/v1/queues/flow/resume/").json()["paused"] is False
    body = error(api.patch("/api/v1/queues/flow/", {"max_in_flight": 3}, format="json"), 403)
    assert body["details"]["permission"] == "jobs.change_queue"
    assert Queue.objects.get(name="flow").max_in_flight is None
    capped = client_for(admin).patch("/api/v1/queues/flow/", {"max_in_flight": 3}, format="json")
    assert capped.json()["max_in_flight"] == 3


def test_a_queues_cap_is_set_and_reset_to_the_default(admin, settings):
    settings.JOBPLATFORM_QUEUE_MAX_IN_FLIGHT = 500
    operator = client_for(admin)
    capped = operator.patch("/api/v1/queues/flow/", {"max_in_flight": 3}, format="json").json()
    assert (capped["max_in_flight"], capped["max_in_flight_is_default"]) == (3, False)
    reset = operator.patch("/api/v1/queues/flow/", {"max_in_flight": None}, format="json").json()
    assert (reset["max_in_flight"], reset["max_in_flight_is_default"]) == (500, True)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"max_in_flight": 0}, 400, "QUEUES.INVALID_MAX_IN_FLIGHT"),
        ({"max_in_flight": "3"}, 400, "API.VALIDATION_ERROR"),
        ({"paused": True}, 400, "API.VALIDATION_ERROR"),
    ],
)
def test_a_bad_queue_change_is_a_400(admin, body, status, code):
    response = client_for(admin).patch("/api/v1/queues/flow/", body, format="json")
    assert error(response, status)["code"] == code


def test_an_unknown_queue_is_a_404(api, admin):
    assert error(api.get("/api/v1/queues/nope/"), 404)["code"] == "QUEUES.NOT_FOUND"
    assert error(client_for(admin).post("/api/v1/queues/nope/pause/"), 404)["code"] == (
        "QUEUES.NOT_FOUND"
    )
    assert not Queue.objects.filter(name="nope").exists()


# --- why a job waits ---------------------------------------------------------------------------


def reasons(api, job: Job) -> list[str]:
    response = api.get(f"/api/v1/jobs/{job.id}/")
    assert response.status_code == 200
    return [r["reason"] for r in response.json()["waiting_for"]]


def test_a_due_job_that_nothing_holds_waits_for_the_next_release(api, user):
    assert reasons(api, JobFactory(owner=user)) == ["release"]
    assert reasons(api, JobFactory(owner=user, status=Job.Status.RUNNING)) == []


def test_a_job_waits_for_its_run_at_or_its_retry_backoff(api, user):
    later = timezone.now() + timedelta(hours=1)
    job = JobFactory(owner=user, run_at=later)
    response = api.get(f"/api/v1/jobs/{job.id}/").json()
    [waiting] = response["waiting_for"]
    assert waiting["reason"] == "run_at" and waiting["until"] == response["run_at"]
    retry = JobFactory(owner=user, status=Job.Status.RETRYING, attempts=1, next_attempt_at=later)
    assert reasons(api, retry) == ["retry_backoff"]


def test_a_job_waits_for_its_paused_queue_and_its_full_cap(api, user, admin):
    operator = client_for(admin)
    job = JobFactory(owner=user, queue="flow")
    JobFactory.create_batch(2, queue="flow", status=Job.Status.QUEUED)
    operator.patch("/api/v1/queues/flow/", {"max_in_flight": 2}, format="json")
    operator.post("/api/v1/queues/flow/pause/")  # hands the two QUEUED back to pending
    assert reasons(api, job) == ["paused_queue"]
    operator.post("/api/v1/queues/flow/resume/")
    Job.objects.filter(queue="flow").exclude(id=job.id).update(status=Job.Status.QUEUED)
    assert reasons(api, job) == ["queue_cap"]
    operator.patch("/api/v1/queues/flow/", {"max_in_flight": None}, format="json")
    [waiting] = api.get(f"/api/v1/jobs/{job.id}/").json()["waiting_for"]
    assert (waiting["reason"], waiting["queued"]) == ("release", 2)


def test_a_job_waits_for_its_concurrency_key(api, user):
    JobFactory(owner=user, status=Job.Status.RUNNING, concurrency_key="k")
    job = JobFactory(owner=user, concurrency_key="k", hold=Hold.CONCURRENCY_KEY)
    response = api.get(f"/api/v1/jobs/{job.id}/").json()
    [waiting] = response["waiting_for"]
    assert {k: waiting[k] for k in ("reason", "concurrency_key", "in_flight")} == {
        "reason": "concurrency_key",
        "concurrency_key": "k",
        "in_flight": 1,
    }
    assert waiting["max_concurrency"] == 1
