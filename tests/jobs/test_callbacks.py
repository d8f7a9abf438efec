"""Completion callbacks: the field at submission, the delivery against a real local receiver, and
end to end through the REST API with the session's real worker."""

from __future__ import annotations

import socket
import threading
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from executions.models import Execution
from executions.reaper import execution_reap_lost
from jobplatform.models import OutboxMessage
from jobplatform.roles import Role
from jobplatform.webhooks import WebhookDeliveryError
from jobs.callbacks.models import CallbackDelivery
from jobs.callbacks.services import DELIVER_TASK, callback_deliver, callback_key
from jobs.models import Job
from jobs.services import job_cancel
from jobs.tasks import deliver_callback
from tests.conftest import client_for, running_platform
from tests.deadletter.support import WebhookReceiver
from tests.factories import UserFactory, with_role
from tests.jobs.factories import JobFactory
from tests.support import wait_for

SECRET = "test-callback-secret"  # tests/settings.py
LOG = [{"type": "log", "params": {"message": "hi"}}]
State = CallbackDelivery.State


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def path():
    return f"/{uuid.uuid4().hex}"


def submit(api, **fields):
    return api.post("/api/v1/jobs/", {"name": "cb", "steps": LOG, **fields}, format="json")


# --- submission -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_job_keeps_its_callback_url_and_shows_it(api, receiver, path):
    response = submit(api, callback_url=receiver.url + path)
    assert response.status_code == 201, response.content
    assert response.json()["callback_url"] == receiver.url + path
    job_id = response.json()["id"]
    assert api.get(f"/api/v1/jobs/{job_id}/").json()["callback_url"] == receiver.url + path
    assert api.get(f"/api/v1/jobs/{job_id}/callbacks/").json() == {"results": []}
    without = submit(api, callback_url=None).json()
    assert without["callback_url"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/x", "JOBS.INVALID_CALLBACK_URL"),
        ("example.com/hook", "JOBS.INVALID_CALLBACK_URL"),
        ("http://", "JOBS.INVALID_CALLBACK_URL"),
        ("https://example.com/" + "x" * 2048, "JOBS.INVALID_CALLBACK_URL"),
        ("http://10.1.2.3/hook", "JOBS.CALLBACK_URL_REFUSED"),
        ("http://169.254.169.254/latest/meta-data", "JOBS.CALLBACK_URL_REFUSED"),
        ("http://[::1]:8000/hook", "JOBS.CALLBACK_URL_REFUSED"),
    ],
)
def test_a_bad_or_private_callback_url_is_refused_at_submission(api, url, code):
    response = submit(api, callback_url=url)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code


@pytest.mark.django_db
def test_loopback_is_refused_unless_the_operator_allows_it(api, settings):
    settings.JOBPLATFORM_HTTP_ALLOW = []
    response = submit(api, callback_url="http://127.0.0.1:9/hook")
    assert response.json()["error"]["code"] == "JOBS.CALLBACK_URL_REFUSED"
    assert response.json()["error"]["details"] == {"address": "127.0.0.1", "reason": "loopback"}


@pytest.mark.django_db
@pytest.mark.parametrize("url", [42, ""])
def test_a_callback_url_of_the_wrong_type_is_a_validation_error(api, url):
    response = submit(api, callback_url=url)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.VALIDATION_ERROR"


@pytest.mark.django_db
def test_without_a_signing_key_callbacks_are_refused(api, settings):
    settings.JOBPLATFORM_CALLBACK_SECRET = ""
    response = submit(api, callback_url="https://hooks.example.com/done")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "JOBS.CALLBACKS_DISABLED"
    assert submit(api).status_code == 201  # jobs without a callback are as before


@pytest.mark.django_db
def test_bulk_submission_checks_each_callback_url(api):
    response = api.post(
        "/api/v1/jobs/bulk/",
        {
            "jobs": [
                {"name": "a", "steps": LOG, "callback_url": "https://hooks.example.com/a"},
                {"name": "b", "steps": LOG, "callback_url": "http://10.0.0.1/b"},
            ]
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "JOBS.CALLBACK_URL_REFUSED"


def test_a_completion_webhook_without_a_secret_is_refused_at_start(settings):
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL = "https://ops.example.com/jobs"
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET = ""
    with pytest.raises(ImproperlyConfigured, match="COMPLETION_WEBHOOK_SECRET"):
        apps.get_app_config("jobs").ready()


# --- each owner's signing key ---------------------------------------------------------------


@pytest.mark.django_db
def test_each_owner_gets_a_key_of_its_own(api, user, viewer):
    response = api.get("/api/v1/callbacks/key/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "key": callback_key(owner_id=user.pk),
        "algorithm": "hmac-sha256",
        "header": "X-Jobplatform-Signature",
    }
    assert len(body["key"]) == 64 and body["key"] != SECRET
    other = with_role(UserFactory(), Role.OPERATOR)
    assert client_for(other).get("/api/v1/callbacks/key/").json()["key"] != body["key"]
    # A viewer submits no jobs, so receives no callbacks.
    refused = client_for(viewer).get("/api/v1/callbacks/key/")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AUTH.PERMISSION_DENIED"


@pytest.mark.django_db
def test_rotating_the_secret_rotates_every_key(api, settings):
    before = api.get("/api/v1/callbacks/key/").json()["key"]
    settings.JOBPLATFORM_CALLBACK_SECRET = "rotated"
    assert api.get("/api/v1/callbacks/key/").json()["key"] != before


@pytest.mark.django_db
def test_no_key_without_callbacks(api, settings):
    settings.JOBPLATFORM_CALLBACK_SECRET = ""
    response = api.get("/api/v1/callbacks/key/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "JOBS.CALLBACKS_DISABLED"


# --- publishing: once per end, after the commit ---------------------------------------------


@pytest.mark.django_db
def test_a_cancel_publishes_one_delivery_after_commit_and_a_second_cancel_none(
    django_capture_on_commit_callbacks,
):
    job = JobFactory(callback_url="https://hooks.example.com/x", run_at=timezone.now())
    with django_capture_on_commit_callbacks() as published:
        assert job_cancel(job_id=job.id, actor=None) is True
        assert job_cancel(job_id=job.id, actor=None) is False  # the repeated end matches no row
    [send] = published
    [message] = OutboxMessage.objects.all()  # written with the cancel, sent after its commit
    assert send.func.__name__ == "_send" and send.args == (message.id, DELIVER_TASK, message.args)
    assert message.task == DELIVER_TASK
    delivery_id, job_id, event, target = message.args
    assert uuid.UUID(delivery_id).version == 4  # a new id for each end: X-Jobplatform-Delivery
    assert (job_id, event, target) == (str(job.id), "job.cancelled", "job")


@pytest.mark.django_db
def test_no_callback_url_and_no_webhook_publish_nothing(django_capture_on_commit_callbacks):
    job = JobFactory()
    with django_capture_on_commit_callbacks() as published:
        job_cancel(job_id=job.id, actor=None)
    assert published == [] and not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_the_operator_webhook_gets_every_end(settings, django_capture_on_commit_callbacks):
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL = "http://127.0.0.1:9/ops"
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET = "ops-secret"
    job = JobFactory()  # no callback_url of its own
    with django_capture_on_commit_callbacks():
        job_cancel(job_id=job.id, actor=None)
    [message] = OutboxMessage.objects.all()
    assert message.args[2:] == ["job.cancelled", "operator"]


@pytest.mark.django_db
def test_a_job_the_reaper_fails_publishes_its_failed_callback(django_capture_on_commit_callbacks):
    job = JobFactory(callback_url="https://hooks.example.com/x", max_retries=0)
    Job.objects.filter(id=job.id).update(status=Job.Status.RUNNING, attempts=1)
    beat = timezone.now() - timedelta(seconds=60)
    Execution.objects.create(
        job=job, attempt=1, worker="w@dead", started_at=beat, heartbeat_at=beat
    )
    with django_capture_on_commit_callbacks():
        assert execution_reap_lost(lost_after=30) == 1
    [message] = OutboxMessage.objects.filter(task=DELIVER_TASK)
    assert message.args[1:] == [str(job.id), "job.failed", "job"]


# --- delivery, one attempt at a time (the task's body) ----------------------------------------


def ended_job(url, **fields):
    values = {"status": "succeeded", "attempts": 1, "finished_at": timezone.now()}
    return JobFactory(callback_url=url, **(values | fields))


@pytest.mark.django_db
def test_a_delivery_is_signed_json_recorded_and_not_repeated(receiver, path):
    job = ended_job(receiver.url + path)
    delivery_id = uuid.uuid4()
    row = callback_deliver(
        delivery_id=delivery_id, job_id=job.id, event="job.succeeded", target="job"
    )
    assert row is not None and (row.state, row.status_code, row.attempt) == ("delivered", 200, 1)
    [request] = receiver.at(path)
    assert request.signature_is_valid(callback_key(owner_id=job.owner_id))
    # Signed with the owner's key, not the platform's secret nor another owner's key.
    assert not request.signature_is_valid(SECRET)
    assert not request.signature_is_valid(callback_key(owner_id=job.owner_id + 1))
    assert request.headers["X-Jobplatform-Event"] == "job.succeeded"
    assert request.headers["X-Jobplatform-Delivery"] == str(delivery_id)
    body = request.json()
    assert body["event"] == "job.succeeded" and body["delivery"] == str(delivery_id)
    assert body["job"]["id"] == str(job.id) and body["job"]["status"] == "succeeded"
    assert body["job"]["owner"] == job.owner.username and body["job"]["error"] is None
    assert "steps" not in body["job"] and "input" not in body["job"]
    # A redelivered message of a delivery that ended sends nothing.
    assert (
        callback_deliver(
            delivery_id=delivery_id, job_id=job.id, event="job.succeeded", target="job"
        )
        is None
    )
    assert len(receiver.at(path)) == 1


@pytest.mark.django_db
def test_a_receiver_that_cannot_take_it_now_is_retried_and_each_attempt_recorded(receiver, path):
    receiver.answer(path, 500)
    job = ended_job(receiver.url + path)
    args = {"delivery_id": uuid.uuid4(), "job_id": job.id, "event": "job.succeeded"}
    with pytest.raises(WebhookDeliveryError):
        callback_deliver(**args, target="job")
    row = callback_deliver(**args, target="job")
    assert row is not None and row.attempt == 2
    rows = CallbackDelivery.objects.filter(job=job).values_list("attempt", "state", "status_code")
    assert list(rows) == [(1, "retrying", 500), (2, "delivered", 200)]
    first, second = receiver.at(path)
    assert first.body == second.body
    assert second.signature_is_valid(callback_key(owner_id=job.owner_id))


@pytest.mark.django_db
def test_a_refusal_is_recorded_and_not_retried(receiver, path):
    receiver.answer(path, 410)
    job = ended_job(receiver.url + path)
    row = callback_deliver(
        delivery_id=uuid.uuid4(), job_id=job.id, event="job.succeeded", target="job"
    )
    assert row is not None
    assert (row.state, row.status_code, row.error) == (
        "failed",
        410,
        "the receiver answered 410",
    )


@pytest.mark.django_db
def test_the_last_try_gives_up(receiver, path):
    receiver.answer(path, 503)
    job = ended_job(receiver.url + path)
    row = callback_deliver(
        delivery_id=uuid.uuid4(),
        job_id=job.id,
        event="job.succeeded",
        target="job",
        last_try=True,
    )
    assert row is not None and (row.state, row.status_code) == ("failed", 503)


@pytest.mark.django_db
def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(receiver, path, settings):
    # Accepted at submission (a name), refused when it resolves: nothing is sent.
    port = receiver.url.rsplit(":", 1)[1]
    job = ended_job(f"http://localhost:{port}{path}")
    settings.JOBPLATFORM_HTTP_ALLOW = []
    row = callback_deliver(
        delivery_id=uuid.uuid4(), job_id=job.id, event="job.succeeded", target="job"
    )
    assert row is not None and row.state == "failed" and row.status_code is None
    assert "which is refused" in row.error
    assert receiver.at(path) == []


@pytest.mark.django_db
def test_the_operator_webhook_is_signed_with_its_own_secret(receiver, path, settings):
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL = receiver.url + path
    settings.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET = "ops-secret"
    settings.JOBPLATFORM_HTTP_ALLOW = []  # the operator's own URL is not the http step's to refuse
    job = ended_job("", status="failed", last_error={"code": "STEP.FAILED", "message": "boom"})
    row = callback_deliver(
        delivery_id=uuid.uuid4(), job_id=job.id, event="job.failed", target="operator"
    )
    assert row is not None and row.state == "delivered"
    [request] = receiver.at(path)
    assert request.signature_is_valid("ops-secret")
    assert not request.signature_is_valid(callback_key(owner_id=job.owner_id))
    assert request.json()["job"]["error"] == {"code": "STEP.FAILED", "message": "boom"}


def test_the_task_retries_with_capped_backoff_a_bounded_number_of_times():
    assert deliver_callback.name == DELIVER_TASK
    assert deliver_callback.autoretry_for == (WebhookDeliveryError,)
    assert deliver_callback.max_retries == 8
    assert deliver_callback.retry_backoff == 2 and deliver_callback.retry_backoff_max == 600
    assert deliver_callback.retry_jitter is True and deliver_callback.acks_late is True


# --- end to end: the REST API, the session's worker, a real receiver -------------------------


def delivered(api, job_id, count=1):
    """The job's callback attempts once ``count`` of them have finished."""
    return wait_for(
        lambda: (
            len(rows := api.get(f"/api/v1/jobs/{job_id}/callbacks/").json()["results"]) >= count
            and all(r["finished_at"] for r in rows)
            and rows
        ),
        what=f"{count} callback attempt(s) of job {job_id}",
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_succeeded_job_calls_back_once_signed(platform, api, receiver, path):
    job_id = submit(api, callback_url=receiver.url + path).json()["id"]
    [row] = delivered(api, job_id)
    assert row["event"] == "job.succeeded" and row["state"] == "delivered"
    assert row["status_code"] == 200 and row["attempt"] == 1 and row["target"] == "job"
    [request] = receiver.at(path)
    key = api.get("/api/v1/callbacks/key/").json()["key"]  # how a client learns its key
    assert request.signature_is_valid(key)
    assert request.headers["X-Jobplatform-Delivery"] == row["delivery_id"]
    body = request.json()
    assert body["job"]["id"] == job_id and body["job"]["status"] == "succeeded"
    assert body["job"]["finished_at"] is not None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_dead_lettered_job_calls_back_failed(platform, api, receiver, path):
    steps = [{"type": "fail", "params": {"mode": "permanent", "message": "order 7 bad"}}]
    job_id = submit(api, steps=steps, callback_url=receiver.url + path).json()["id"]
    [row] = delivered(api, job_id)
    assert (row["event"], row["state"]) == ("job.failed", "delivered")
    [request] = receiver.at(path)
    body = request.json()
    assert body["event"] == "job.failed" and body["job"]["status"] == "failed"
    assert body["job"]["error"]["message"] == "order 7 bad"
    assert api.get(f"/api/v1/dead-letters/?job={job_id}").json()["results"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_job_calls_back_cancelled(platform, api, receiver, path):
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    job_id = submit(api, run_at=later, callback_url=receiver.url + path).json()["id"]
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    [row] = delivered(api, job_id)
    assert (row["event"], row["state"]) == ("job.cancelled", "delivered")
    assert receiver.at(path)[0].json()["job"]["status"] == "cancelled"
    # Cancelling again is a no-op: no second callback.
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    assert len(api.get(f"/api/v1/jobs/{job_id}/callbacks/").json()["results"]) == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_500_then_200_gets_a_retried_delivery(platform, api, receiver, path):
    receiver.answer(path, 500)
    job_id = submit(api, callback_url=receiver.url + path).json()["id"]
    first, second = delivered(api, job_id, count=2)
    assert (first["attempt"], first["state"], first["status_code"]) == (1, "retrying", 500)
    assert (second["attempt"], second["state"], second["status_code"]) == (2, "delivered", 200)
    assert first["delivery_id"] == second["delivery_id"]
    one, two = receiver.at(path)
    key = api.get("/api/v1/callbacks/key/").json()["key"]
    assert one.body == two.body and two.signature_is_valid(key)
    assert one.headers["X-Jobplatform-Delivery"] == two.headers["X-Jobplatform-Delivery"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_4xx_is_not_retried(platform, api, receiver, path):
    receiver.answer(path, 404, 404)
    job_id = submit(api, callback_url=receiver.url + path).json()["id"]
    [row] = delivered(api, job_id)
    # failed: the task ended without raising for a retry; the receiver was asked once.
    assert (row["state"], row["status_code"]) == ("failed", 404)
    assert len(receiver.at(path)) == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_of_the_webhook_queue_alone_delivers_while_the_jobs_worker_is_busy(
    platform, api, receiver, path, settings, tmp_path
):
    """Deliveries go to JOBPLATFORM_WEBHOOK_QUEUE, not to a job queue: with both processes of
    the session's worker held by running jobs, a worker consuming only the webhook queue
    (threads, as docs/operations.md advises) delivers a job's callback, and its retry: Celery's
    retry goes back to the queue the message came from."""
    settings.JOBPLATFORM_WEBHOOK_QUEUE = f"hooks-{uuid.uuid4().hex[:8]}"  # this worker's alone
    with running_platform(
        tmp_path, queues=settings.JOBPLATFORM_WEBHOOK_QUEUE, pool="threads", webhooks=False,
        name="hooks",
    ) as hooks:  # fmt: skip
        sleep = [{"type": "sleep", "params": {"seconds": 600}}]
        busy = [submit(api, steps=sleep).json()["id"] for _ in range(2)]  # -c 2

        def statuses():
            return {api.get(f"/api/v1/jobs/{job}/").json()["status"] for job in busy}

        wait_for(lambda: statuses() == {"running"}, what="both job processes busy")
        receiver.answer(path, 500)  # the first attempt fails: a retry follows
        later = (timezone.now() + timedelta(hours=1)).isoformat()
        job_id = submit(api, run_at=later, callback_url=receiver.url + path).json()["id"]
        assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
        first, second = delivered(api, job_id, count=2)
        assert (first["state"], second["state"]) == ("retrying", "delivered")
        assert second["event"] == "job.cancelled"
        assert receiver.at(path)[1].json()["job"]["id"] == job_id
        received = f"Task {DELIVER_TASK}["  # Celery's log line of a message taken
        assert received in hooks.worker_output()
        assert statuses() == {"running"}  # held throughout: the delivery took no job slot
        for job in busy:  # the session's worker, freed for the next tests
            assert api.post(f"/api/v1/jobs/{job}/cancel/").status_code == 200
        wait_for(lambda: statuses() == {"cancelled"}, what="the busy jobs to stop")


@pytest.mark.django_db
def test_secrets_in_a_callback_url_are_not_shown(api):
    url = "https://user:pw@hooks.example.com/done?token=s3cret&order=7"
    job = submit(api, callback_url=url).json()
    assert job["callback_url"] == "https://hooks.example.com/done?token=redacted&order=7"


@pytest.mark.django_db
def test_a_schedules_jobs_carry_its_templates_callback_url(api):
    body = {"name": "cb-every-five", "cron": "*/5 * * * *"}
    refused = api.post(
        "/api/v1/schedules/",
        body | {"job": {"steps": LOG, "callback_url": "http://10.0.0.1/x"}},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "JOBS.CALLBACK_URL_REFUSED"
    url = "https://hooks.example.com/nightly?signature=s3cret"
    created = api.post(
        "/api/v1/schedules/", body | {"job": {"steps": LOG, "callback_url": url}}, format="json"
    )
    assert created.status_code == 201, created.content
    shown = "https://hooks.example.com/nightly?signature=redacted"
    assert created.json()["job"]["callback_url"] == shown


@pytest.mark.django_db
def test_an_attempt_whose_worker_was_lost_is_closed_by_the_next(receiver, path):
    job = ended_job(receiver.url + path)
    delivery_id = uuid.uuid4()
    lost = CallbackDelivery.objects.create(  # attempt 1: its worker died mid-POST
        job=job,
        delivery_id=delivery_id,
        target="job",
        url=job.callback_url,
        event="job.succeeded",
        attempt=1,
    )
    row = callback_deliver(  # the redelivered message
        delivery_id=delivery_id, job_id=job.id, event="job.succeeded", target="job"
    )
    assert row is not None and (row.attempt, row.state) == (2, "delivered")
    lost.refresh_from_db()
    assert (lost.state, lost.error) == ("retrying", "lost: no answer was recorded")


@pytest.mark.django_db
def test_the_receivers_answer_body_is_not_read(settings):
    # A receiver that promises a gigabyte and sends none of it: reading the body would wait for
    # the read timeout and count as a failure; the status alone is enough.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def answer() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    job = ended_job(f"http://127.0.0.1:{listener.getsockname()[1]}/huge")
    try:
        row = callback_deliver(
            delivery_id=uuid.uuid4(), job_id=job.id, event="job.succeeded", target="job"
        )
    finally:
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()
    assert row is not None and (row.state, row.status_code) == ("delivered", 200)
