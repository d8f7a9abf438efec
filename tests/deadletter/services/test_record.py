"""dead_letter_record: called by the worker inside the transaction of the FAILED transition."""

from __future__ import annotations

import pytest

from deadletter.models import DeadLetter
from deadletter.services import NOTIFY_TASK, dead_letter_record
from jobplatform.models import OutboxMessage
from jobs.steps import AttemptError
from tests.deadletter.factories import FailedJobFactory, _error

pytestmark = pytest.mark.django_db


def test_it_keeps_the_error_and_a_snapshot_of_the_job(user):
    job = FailedJobFactory(
        owner=user,
        steps=[{"type": "log", "params": {"message": "x"}}],
        input={"order": 7},
        max_retries=4,
        retry_backoff=1.5,
        attempts=5,
    )
    error = AttemptError(**_error("GET http://10.1.2.3/orders/99 answered 503", step_type="http"))
    dead = dead_letter_record(
        job_id=job.id, reason=DeadLetter.Reason.EXHAUSTED, error=error, attempts=5, worker="w@h"
    )
    dead.refresh_from_db()
    assert (dead.reason, dead.state, dead.attempts, dead.worker) == ("exhausted", "open", 5, "w@h")
    assert dead.error == error.as_dict()
    assert (dead.error_type, dead.error_code, dead.step_type, dead.step_index) == (
        "TransientStepError",
        "STEP.FAIL_TRANSIENT",
        "http",
        0,
    )
    assert dead.error_message == error.message
    assert dead.message_pattern == "GET http://<ip>/orders/<n> answered <n>"
    assert len(dead.fingerprint) == 32
    assert dead.steps == job.steps
    assert dead.input == {"order": 7}
    assert dead.retry_policy == {
        "max_retries": 4,
        "retry_backoff": 1.5,
        "retry_backoff_max": 300.0,
        "retry_jitter": True,
        "timeout": 3600,
    }
    assert dead.created_at is not None and dead.resolved_at is None


def test_an_error_without_a_step_is_recorded_too(user):
    """A lost attempt (the reaper) has no step: the step columns stay empty."""
    job = FailedJobFactory(owner=user)
    error = AttemptError(
        type="AttemptLost", code="EXECUTION.LOST", message="no heartbeat for 61s", permanent=False
    )
    dead = dead_letter_record(job_id=job.id, reason=DeadLetter.Reason.LOST, error=error, attempts=1)
    assert (dead.step_type, dead.step_index, dead.message_pattern) == (
        "",
        None,
        "no heartbeat for <n>s",
    )


def test_a_job_has_one_open_entry_however_often_it_dies(user):
    job = FailedJobFactory(owner=user)
    first = dead_letter_record(
        job_id=job.id, reason="exhausted", error=AttemptError(**_error("a")), attempts=1
    )
    second = dead_letter_record(
        job_id=job.id, reason="permanent", error=AttemptError(**_error("b")), attempts=2
    )
    first.refresh_from_db()
    assert (first.state, second.state) == ("retried", "open")
    assert first.resolved_at is not None


def test_the_webhook_is_published_only_after_the_commit(
    user, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET = "s3cret"
    sent = []
    monkeypatch.setattr(
        "jobplatform.outbox.celery_app.send_task",
        lambda name, args: sent.append((name, args)),
    )
    job = FailedJobFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dead = dead_letter_record(
            job_id=job.id, reason="exhausted", error=AttemptError(**_error("a")), attempts=1
        )
        assert sent == []  # nothing inside the transaction
        # ...but the message is written with the entry, for a dispatcher to publish if the
        # process dies before it does (jobplatform.outbox)
        [message] = OutboxMessage.objects.all()
        assert (message.task, message.args) == (NOTIFY_TASK, [dead.id])
    assert callbacks  # the publication (and the metric) wait for the commit
    assert sent == [(NOTIFY_TASK, [dead.id])]
    assert not OutboxMessage.objects.exists()  # published: its row is gone


def test_no_webhook_no_publication(user, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(
        "jobplatform.outbox.celery_app.send_task",
        lambda name, args: sent.append((name, args)),
    )
    job = FailedJobFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_record(
            job_id=job.id, reason="exhausted", error=AttemptError(**_error("a")), attempts=1
        )
    assert sent == [] and not OutboxMessage.objects.exists()
