from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Execution
from jobplatform.models import AuditEvent
from jobplatform.roles import Role
from jobs.models import CallbackDelivery, Job, OwnerQuota, Queue
from tests.factories import UserFactory, with_role
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


def test_a_waiting_job_says_why_it_waits(operator):
    job = JobFactory(run_at=timezone.now() + timedelta(hours=1))
    page = operator.get(f"/admin/jobs/job/{job.id}/change/")
    assert page.status_code == 200
    assert b"Waiting for" in page.content and b"run_at" in page.content


def test_operators_pause_and_resume_queues_and_set_a_cap(operator, admin):
    waiting = JobFactory(queue="flow")
    queued = JobFactory(queue="flow", status=Job.Status.QUEUED)
    listing = operator.get("/admin/jobs/queue/")
    assert listing.status_code == 200 and b"flow" in listing.content  # made after migrate
    operator.post("/admin/jobs/queue/", {"action": "pause_queues", "_selected_action": ["flow"]})
    assert Queue.objects.get(name="flow").paused
    queued.refresh_from_db()
    assert queued.status == Job.Status.PENDING  # through the service: handed back
    page = operator.get(f"/admin/jobs/job/{waiting.id}/change/")
    assert b"paused_queue" in page.content
    operator.post("/admin/jobs/queue/", {"action": "resume_queues", "_selected_action": ["flow"]})
    assert not Queue.objects.get(name="flow").paused
    response = operator.post("/admin/jobs/queue/flow/change/", {"max_in_flight": "7"})
    assert response.status_code == 302
    assert Queue.objects.get(name="flow").max_in_flight == 7
    # Each action is in the audit trail, under the operator's name.
    trail = AuditEvent.objects.filter(subject="queue flow").order_by("id")
    assert [(e.action, e.actor, e.details) for e in trail] == [
        ("queue.paused", admin, {"unreleased": 1}),
        ("queue.resumed", admin, {}),
        ("queue.cap_changed", admin, {"max_in_flight": [None, 7]}),
    ]


def test_the_operator_role_pauses_a_queue_in_the_admin_but_may_not_cap_it(client):
    client.force_login(with_role(UserFactory(is_staff=True), Role.OPERATOR))
    client.post("/admin/jobs/queue/", {"action": "pause_queues", "_selected_action": ["flow"]})
    assert Queue.objects.get(name="flow").paused
    client.post("/admin/jobs/queue/", {"action": "resume_queues", "_selected_action": ["flow"]})
    assert not Queue.objects.get(name="flow").paused
    response = client.post("/admin/jobs/queue/flow/change/", {"max_in_flight": "7"})
    assert response.status_code == 403
    assert Queue.objects.get(name="flow").max_in_flight is None
    assert client.get("/admin/jobs/ownerquota/").status_code == 403


def test_operators_give_an_owner_a_weight_and_a_cap(operator, user):
    refused = operator.post(
        "/admin/jobs/ownerquota/add/", {"owner": user.pk, "weight": "0", "max_unfinished": ""}
    )
    assert refused.status_code == 200  # the form shows the error
    assert not OwnerQuota.objects.exists()
    response = operator.post(
        "/admin/jobs/ownerquota/add/",
        {"owner": user.pk, "weight": "3", "max_unfinished": "10"},
    )
    assert response.status_code == 302, response.content
    quota = OwnerQuota.objects.get(owner=user)
    assert (quota.weight, quota.max_unfinished) == (3, 10)


def test_a_jobs_page_shows_its_callback_deliveries_read_only(operator):
    secret_url = "https://me:pw@hooks.example.com/done?token=s3cr3t&id=7"
    job = JobFactory(status=Job.Status.SUCCEEDED, callback_url=secret_url)
    CallbackDelivery.objects.create(
        job=job,
        delivery_id=uuid.uuid4(),
        target="job",
        url=job.callback_url,
        event="job.succeeded",
        attempt=1,
        state="retrying",
        status_code=503,
        error="the receiver answered 503",
    )
    page = operator.get(f"/admin/jobs/job/{job.id}/change/")
    assert page.status_code == 200
    assert b"the receiver answered 503" in page.content
    # Read-only: shown, with no form field for its rows and no row to add or delete.
    [inline] = [
        f for f in page.context_data["inline_admin_formsets"] if f.opts.model is CallbackDelivery
    ]
    assert inline.has_view_permission
    assert not (inline.has_add_permission or inline.has_change_permission)
    assert not inline.has_delete_permission
    assert b"callback_deliveries-0-state" not in page.content
    # The URL, on the job and on its deliveries, as the API shows it: no secret in the page.
    assert b"https://hooks.example.com/done?token=redacted&amp;id=7" in page.content
    assert b"s3cr3t" not in page.content and b"me:pw" not in page.content
