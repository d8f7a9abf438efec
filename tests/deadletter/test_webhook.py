"""The webhook's delivery against a real local HTTP receiver (the worker path is end to end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from deadletter.services import dead_letter_notify
from deadletter.tasks import notify_webhook
from deadletter.webhooks import WebhookDeliveryError
from tests.conftest import REPO, database_url
from tests.deadletter.factories import DeadLetterFactory
from tests.deadletter.support import WebhookReceiver
from tests.support import wait_for

SECRET = "webhook-test-secret"


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def hook(receiver, settings):
    """A fresh path on the receiver, configured as the webhook URL."""
    path = f"/{uuid.uuid4().hex}"
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL = receiver.url + path
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET = SECRET
    return path


@pytest.mark.django_db
def test_a_dead_letter_is_posted_as_signed_json(receiver, hook):
    dead = DeadLetterFactory(message="GET http://10.0.0.1/x answered 503")
    assert dead_letter_notify(dead_letter_id=dead.id) is True
    [request] = receiver.at(hook)
    assert request.signature_is_valid(SECRET)
    assert not request.signature_is_valid("another secret")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Jobplatform-Event"] == "dead_letter.created"
    assert request.headers["X-Jobplatform-Delivery"] == str(dead.id)
    body = request.json()
    assert body["event"] == "dead_letter.created"
    assert body["dead_letter"]["id"] == dead.id
    assert body["dead_letter"]["reason"] == "exhausted"
    assert body["dead_letter"]["fingerprint"] == dead.fingerprint
    assert body["dead_letter"]["error"]["message"] == "GET http://10.0.0.1/x answered 503"
    assert body["job"] == {
        "id": str(dead.job_id),
        "name": dead.job.name,
        "queue": "default",
        "owner": dead.job.owner.username,
        "trace_id": dead.job.trace_id,
    }
    assert "traceback" not in request.body.decode()  # triage data only; the API has the rest
    dead.refresh_from_db()
    assert dead.notified_at is not None
    # A redelivered message does not notify twice.
    assert dead_letter_notify(dead_letter_id=dead.id) is False
    assert len(receiver.at(hook)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_a_receiver_that_cannot_take_it_now_is_retried(receiver, hook, status):
    receiver.answer(hook, status)
    dead = DeadLetterFactory()
    with pytest.raises(WebhookDeliveryError):
        dead_letter_notify(dead_letter_id=dead.id)
    dead.refresh_from_db()
    assert dead.notified_at is None
    assert dead_letter_notify(dead_letter_id=dead.id) is True  # the retry
    first, second = receiver.at(hook)
    assert first.body == second.body and second.signature_is_valid(SECRET)


@pytest.mark.django_db
def test_a_refusal_is_logged_and_not_retried(receiver, hook, caplog):
    receiver.answer(hook, 400)
    dead = DeadLetterFactory()
    assert dead_letter_notify(dead_letter_id=dead.id) is False
    assert "webhook refused, not retried" in caplog.text


@pytest.mark.django_db
def test_an_unreachable_receiver_is_retried(settings):
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL = "http://127.0.0.1:1/hook"  # nothing listens
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET = SECRET
    with pytest.raises(WebhookDeliveryError):
        dead_letter_notify(dead_letter_id=DeadLetterFactory().id)


def test_the_task_retries_delivery_errors_a_bounded_number_of_times():
    assert notify_webhook.name == "deadletter.notify_webhook"
    assert notify_webhook.autoretry_for == (WebhookDeliveryError,)
    assert notify_webhook.max_retries == 8
    assert notify_webhook.retry_backoff == 2 and notify_webhook.retry_backoff_max == 600
    assert notify_webhook.acks_late is True


def test_a_webhook_url_without_a_secret_is_refused_at_start(settings):
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL = "https://hooks.example.com/dead"
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET = ""
    with pytest.raises(ImproperlyConfigured, match="WEBHOOK_SECRET"):
        apps.get_app_config("deadletter").ready()


# --- end to end: a worker configured with the webhook -------------------------------------------

HOOK_QUEUE = "deadletter-hook"  # served by the worker below only, which has the webhook set


@pytest.fixture(scope="module")
def hook_platform(platform, receiver, tmp_path_factory):
    """A worker and a dispatcher of their own, for one queue, with the webhook configured.

    The session's worker has no webhook: this worker is where the job dies, and its queue,
    made its JOBPLATFORM_WEBHOOK_QUEUE too, is where it publishes, and itself runs, the
    notification (the session's worker consumes the default webhook queue).
    """
    logs = tmp_path_factory.mktemp("hook-platform")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        "JOBPLATFORM_QUEUES": HOOK_QUEUE,
        "JOBPLATFORM_WEBHOOK_QUEUE": HOOK_QUEUE,
        "JOBPLATFORM_DEADLETTER_WEBHOOK_URL": f"{receiver.url}/e2e",
        "JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET": SECRET,
    }
    hostname = f"hook-worker-{os.getpid()}@127.0.0.1"
    worker_argv = [
        sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "--loglevel", "INFO",
        "--pool", "prefork", "--concurrency", "1", "--queues", HOOK_QUEUE,
        "--hostname", hostname, "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    dispatcher_argv = [
        sys.executable, "manage.py", "run_dispatcher", "--poll", "1", "--queues", HOOK_QUEUE,
    ]  # fmt: skip
    processes = []
    for name, argv in (("worker", worker_argv), ("dispatcher", dispatcher_argv)):
        with (logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            processes.append(process)
    try:
        wait_for(
            lambda: "ready." in (logs / "worker.log").read_text(errors="replace"),
            timeout=60,
            what="the webhook worker to be ready",
        )
        wait_for(
            lambda: "dispatcher started" in (logs / "dispatcher.log").read_text(),
            timeout=30,
            what="the webhook dispatcher to start",
        )
        yield logs
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_notifies_a_new_dead_letter_retrying_a_receiver_that_was_down(
    hook_platform, receiver, api, settings
):
    settings.JOBPLATFORM_QUEUES = [*settings.JOBPLATFORM_QUEUES, HOOK_QUEUE]
    receiver.answer("/e2e", 503)  # the first delivery fails: the task retries it
    response = api.post(
        "/api/v1/jobs/",
        {
            "name": "hooked",
            "queue": HOOK_QUEUE,
            "steps": [{"type": "fail", "params": {"mode": "permanent", "message": "order 7 bad"}}],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    first, second = wait_for(
        lambda: len(receiver.at("/e2e")) >= 2 and receiver.at("/e2e"),
        timeout=60,
        what="the notification to be delivered after a retry",
    )
    assert first.body == second.body
    assert second.signature_is_valid(SECRET) and first.signature_is_valid(SECRET)
    [entry] = api.get(f"/api/v1/dead-letters/?job={job_id}").json()["results"]
    body = second.json()
    assert body["event"] == "dead_letter.created"
    assert body["dead_letter"]["id"] == entry["id"]
    assert body["dead_letter"]["reason"] == "permanent"
    assert body["dead_letter"]["error"]["message"] == "order 7 bad"
    assert body["dead_letter"]["worker"].startswith("hook-worker-")
    assert body["job"]["id"] == job_id
    assert second.headers["X-Jobplatform-Delivery"] == str(entry["id"])
    wait_for(
        lambda: api.get(f"/api/v1/dead-letters/{entry['id']}/").json()["notified_at"],
        what="the delivery to be recorded",
    )
    assert len(receiver.at("/e2e")) == 2
