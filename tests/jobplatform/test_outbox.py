"""The outbox: a message written with the change it announces is published after the commit, and
by a dispatcher when the process that committed it died before publishing it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from jobplatform.models import OutboxMessage
from jobplatform.outbox import outbox_flush, outbox_publish
from tests.conftest import REPO
from tests.deadletter.support import WebhookReceiver
from tests.support import wait_for


@pytest.fixture
def sent(monkeypatch):
    """What the outbox hands the broker (the unit tests here; the end-to-end test below uses the
    real one)."""
    messages: list[tuple[str, list]] = []
    monkeypatch.setattr(
        "jobplatform.outbox.celery_app.send_task",
        lambda name, args, **_: messages.append((name, args)),
    )
    return messages


@pytest.mark.django_db(transaction=True)
def test_a_message_outside_a_transaction_is_refused(sent):
    with pytest.raises(RuntimeError, match="transaction"):
        outbox_publish(task="t", args=[1])
    assert not OutboxMessage.objects.exists() and sent == []


@pytest.mark.django_db
def test_a_message_goes_out_after_the_commit_and_its_row_with_it(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outbox_publish(task="t", args=["a", 1])
        assert sent == [] and OutboxMessage.objects.count() == 1
    assert sent == [("t", ["a", 1])]
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_message(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        outbox_publish(task="t", args=[1])
        transaction.set_rollback(True)
    assert sent == [] and not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_flush_publishes_only_the_messages_left_behind_oldest_first(sent):
    now = timezone.now()
    old = [
        OutboxMessage.objects.create(task="t", args=[n], created_at=now - timedelta(seconds=60 - n))
        for n in range(3)
    ]
    young = OutboxMessage.objects.create(task="t", args=["young"], created_at=now)
    assert outbox_flush(older_than=30, limit=2) == 2
    assert sent == [("t", [0]), ("t", [1])]
    assert outbox_flush(older_than=30) == 1
    assert sent[-1] == ("t", [2])
    assert list(OutboxMessage.objects.values_list("id", flat=True)) == [young.id]
    assert outbox_flush(older_than=30) == 0
    assert old  # (created above)


DIE_AFTER_COMMIT = """
import os, sys, uuid
import django
django.setup()
from django.db import transaction
from jobs.services import job_cancel
with transaction.atomic():
    # The process dies right after the commit, before the outbox's own on_commit publishes.
    transaction.on_commit(lambda: os._exit(9))
    job_cancel(job_id=uuid.UUID(sys.argv[1]), actor=None)
"""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_callback_whose_process_died_after_the_commit_is_delivered(platform, api):
    """The cancel commits in a process that dies before publishing its callback; the session's
    dispatcher publishes it from the outbox and the worker delivers it."""
    receiver = WebhookReceiver()
    try:
        path = f"/{uuid.uuid4().hex}"
        later = (timezone.now() + timedelta(hours=1)).isoformat()
        response = api.post(
            "/api/v1/jobs/",
            {"name": "dies", "steps": [{"type": "log", "params": {"message": "x"}}],
             "run_at": later, "callback_url": receiver.url + path},
            format="json",
        )  # fmt: skip
        job_id = response.json()["id"]
        done = subprocess.run(
            [sys.executable, "-c", DIE_AFTER_COMMIT, job_id],
            cwd=REPO, env=platform.env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 9, done.stderr.decode()
        assert api.get(f"/api/v1/jobs/{job_id}/").json()["status"] == "cancelled"
        wait_for(lambda: receiver.at(path), timeout=30, what="the callback from the outbox")
        [request] = receiver.at(path)
        assert request.json()["event"] == "job.cancelled"
        assert "whose publish after commit never happened" in platform.dispatcher_log.read_text()
        wait_for(
            lambda: api.get(f"/api/v1/jobs/{job_id}/callbacks/").json()["results"],
            what="the delivery's row",
        )
        [row] = api.get(f"/api/v1/jobs/{job_id}/callbacks/").json()["results"]
        assert (row["state"], row["attempt"]) == ("delivered", 1)
        assert not OutboxMessage.objects.exists()
    finally:
        receiver.close()
