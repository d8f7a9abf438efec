"""The Python client against the live API, with a real worker and dispatcher running the jobs."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from jobplatform_client import (
    ApiError,
    CallbackDelivery,
    Client,
    Execution,
    Job,
    StepResult,
    WaitTimeout,
    verify_callback,
)

from jobs.models import Job as JobRow
from tests.client.conftest import FAST_RETRIES
from tests.deadletter.support import WebhookReceiver
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOG = {"type": "log", "params": {"message": "from the client"}}
PERMANENT_ONCE = {"type": "fail", "params": {"mode": "permanent", "times": 1, "message": "bad"}}


def test_a_job_submitted_through_the_client_is_followed_to_success(platform, jp):
    steps = [LOG, {"type": "sleep", "params": {"seconds": 0.2}}]
    job = jp.jobs.submit(name="client-ok", steps=steps, input={"n": 1}, priority=7)
    assert (job.status, job.priority, job.input, job.executions) == ("pending", 7, {"n": 1}, ())
    assert job.created_at is not None and job.created_at.tzinfo is not None

    snapshots = list(jp.jobs.follow(job.id, interval=0.05))
    final = snapshots[-1]
    assert final.status == "succeeded" and final.is_terminal
    assert all(not s.is_terminal for s in snapshots[:-1])
    assert all(a.raw != b.raw for a, b in itertools.pairwise(snapshots))
    assert final.result == {"slept": 0.2}
    assert final.next_step == 2
    [execution] = final.executions
    assert isinstance(execution, Execution)
    assert (execution.attempt, execution.status, execution.error) == (1, "succeeded", None)
    assert execution.worker.startswith("test-worker-")
    assert all(isinstance(s, StepResult) for s in execution.steps)
    assert [(s.index, s.type, s.status) for s in execution.steps] == [
        (0, "log", "succeeded"),
        (1, "sleep", "succeeded"),
    ]
    assert execution.steps[0].output == {"message": "from the client", "level": "info"}
    assert jp.jobs.wait(job.id) == final


def test_a_job_with_a_callback_url_shows_its_delivered_callback(platform, jp):
    receiver = WebhookReceiver()
    try:
        url = f"{receiver.url}/client"
        job = jp.jobs.submit(name="client-callback", steps=[LOG], callback_url=url)
        assert job.callback_url == url
        assert jp.jobs.wait(job.id).status == "succeeded"
        [delivery] = wait_for(
            lambda: [d for d in jp.jobs.callbacks(job.id) if d.finished_at], what="the callback"
        )
        assert isinstance(delivery, CallbackDelivery)
        assert (delivery.event, delivery.state, delivery.status_code, delivery.attempt) == (
            "job.succeeded",
            "delivered",
            200,
            1,
        )
        [request] = receiver.at("/client")
        assert request.headers["X-Jobplatform-Delivery"] == delivery.delivery_id
        # The receiver checks it with the client's own key.
        signature = request.headers["X-Jobplatform-Signature"]
        key = jp.jobs.callback_key()
        assert verify_callback(request.body, signature, key)
        assert not verify_callback(request.body + b" ", signature, key)
        assert not verify_callback(request.body, None, key)
    finally:
        receiver.close()


def test_a_failing_job_ends_failed_and_its_dead_letter_is_retried_and_dismissed(platform, jp):
    job = jp.jobs.submit(name="client-fails", steps=[LOG, PERMANENT_ONCE], **FAST_RETRIES)
    failed = jp.jobs.wait(job.id, timeout=30)
    assert failed.status == "failed"
    assert (failed.last_error.code, failed.last_error.message) == ("STEP.FAIL_PERMANENT", "bad")
    assert failed.executions[0].steps[1].error.code == "STEP.FAIL_PERMANENT"

    [entry] = jp.dead_letters.iter(job=job.id)
    assert (entry.state, entry.reason, entry.job.id, entry.job.status) == (
        "open", "permanent", job.id, "failed",
    )  # fmt: skip
    assert entry.executions is None  # a list item is the summary
    detail = jp.dead_letters.get(entry.id)
    assert "PermanentStepError: bad" in detail.error.traceback
    assert [e.attempt for e in detail.executions] == [1]

    retried = jp.dead_letters.retry(entry.id, note="try again")
    assert retried.state == "retried"
    assert [a["kind"] for a in retried.actions][-1] == "retry"
    again = jp.jobs.wait(job.id, timeout=30)
    assert (again.status, again.attempts) == ("succeeded", 2)
    with pytest.raises(ApiError) as error:  # a dead-letter retry is not idempotent
        jp.dead_letters.retry(entry.id)
    assert (error.value.status, error.value.code) == (409, "DEADLETTER.JOB_NOT_FAILED")

    other = jp.jobs.submit(name="client-dismissed", steps=[PERMANENT_ONCE])
    assert jp.jobs.wait(other.id, timeout=30).status == "failed"
    outcome = jp.dead_letters.dismiss_many(filter={"job": other.id}, note="not needed")
    assert (outcome.selected, outcome.done, outcome.skipped) == (1, 1, 0)
    [dismissed] = jp.dead_letters.list(job=other.id, state="dismissed").results
    assert dismissed.note == "not needed"
    assert jp.dead_letters.stats()["open"] == 0


def test_cancel_ends_a_running_job_and_a_finished_one_is_not_cancellable(platform, jp):
    job = jp.jobs.submit(name="client-cancel", steps=[{"type": "sleep", "params": {"seconds": 30}}])
    wait_for(lambda: jp.jobs.get(job.id).status == "running", what="the job to run")
    assert jp.jobs.cancel(job.id).status == "cancelled"
    ended = jp.jobs.wait(job.id, timeout=15)
    assert ended.status == "cancelled"
    wait_for(
        lambda: jp.jobs.get(job.id).executions[0].status == "cancelled",
        what="the attempt to stop",
    )
    assert jp.jobs.cancel(job.id).status == "cancelled"  # again: a no-op

    done = jp.jobs.wait(jp.jobs.submit(name="client-done", steps=[LOG]).id, timeout=30)
    with pytest.raises(ApiError) as error:
        jp.jobs.cancel(done.id)
    assert (error.value.status, error.value.code) == (409, "JOBS.NOT_CANCELLABLE")
    assert error.value.details == {"status": "succeeded"}


def test_wait_gives_up_after_its_timeout_with_the_job_as_last_seen(jp):
    later = datetime.now(UTC) + timedelta(hours=1)
    job = jp.jobs.submit(name="client-later", steps=[LOG], run_at=later)
    with pytest.raises(WaitTimeout) as timeout:
        jp.jobs.wait(job.id, timeout=0.3, interval=0.05)
    assert (timeout.value.job.id, timeout.value.job.status) == (job.id, "pending")
    assert timeout.value.job.run_at == later
    moved = jp.jobs.reschedule(job.id, later + timedelta(hours=1))
    assert moved.run_at == later + timedelta(hours=1)


def test_iteration_follows_the_cursor_across_pages(jp):
    later = datetime.now(UTC) + timedelta(hours=1)
    tag = uuid.uuid4().hex[:8]
    jobs = [
        {"name": f"page-{tag}-{i}", "steps": [LOG], "run_at": later.isoformat()} for i in range(7)
    ]
    batch = jp.jobs.submit_many(jobs)
    assert batch.count == 7 and len(set(batch.ids)) == 7

    first = jp.jobs.list(page_size=3, name_contains=f"page-{tag}")
    assert len(first.results) == 3 and first.next is not None and first.previous is None
    second = jp.jobs.list(cursor=first.next)
    assert len(second.results) == 3 and second.previous is not None

    found = list(jp.jobs.iter(page_size=3, name_contains=f"page-{tag}"))
    assert sorted(j.id for j in found) == sorted(batch.ids)  # each once, across three pages
    assert [j.id for j in found[:6]] == [j.id for j in first.results + second.results]
    assert all(isinstance(j, Job) and j.steps is None for j in found)  # summaries
    created = [j.created_at for j in found]
    assert created == sorted(created, reverse=True)
    assert list(jp.jobs.iter(status=["succeeded", "failed"], name_contains=f"page-{tag}")) == []
    assert len(list(jp.jobs.iter(status="pending", name_contains=f"page-{tag}"))) == 7


def test_a_submission_always_carries_an_idempotency_key(jp, token, live_api):
    body = {"name": "client-keyed", "steps": [LOG], "run_at": "2099-01-01T00:00:00Z"}
    first = jp.jobs.submit(**body, idempotency_key="order-42")
    again = jp.jobs.submit(**body, idempotency_key="order-42")
    assert again.id == first.id
    with pytest.raises(ApiError) as reused:
        jp.jobs.submit(**{**body, "priority": 9}, idempotency_key="order-42")
    assert (reused.value.status, reused.value.code) == (409, "JOBS.IDEMPOTENCY_KEY_REUSED")
    assert reused.value.details == {"job_id": first.id}

    # Without a key of the caller's, each submission gets a new one: two jobs.
    one, two = jp.jobs.submit(**body), jp.jobs.submit(**body)
    assert one.id != two.id
    keys = set(
        JobRow.objects.filter(id__in=[one.id, two.id]).values_list("idempotency_key", flat=True)
    )
    assert len(keys) == 2 and None not in keys


def test_schedules_are_created_paused_resumed_triggered_and_deleted(platform, jp):
    schedule = jp.schedules.create(
        name="client-schedule", cron="0 3 1 1 *", timezone="Europe/Berlin", job={"steps": [LOG]}
    )
    assert (schedule.enabled, schedule.timezone, schedule.job["name"]) == (
        True, "Europe/Berlin", "client-schedule",
    )  # fmt: skip
    assert len(schedule.next_fire_times) == 5
    assert schedule.next_fire_times[0].at.utcoffset() == timedelta(hours=1)  # CET in January

    paused = jp.schedules.pause(schedule.id, note="maintenance")
    assert (paused.enabled, paused.pause_note) == (False, "maintenance")
    assert jp.schedules.resume(schedule.id).enabled is True
    changed = jp.schedules.update(schedule.id, cron="0 6 * * 1-5")
    assert changed.cron == "0 6 * * 1-5"
    assert [s.id for s in jp.schedules.iter()] == [schedule.id]

    fired = jp.schedules.trigger(schedule.id)
    assert fired.outcome == "created" and fired.job is not None
    assert jp.jobs.wait(fired.job.id, timeout=30).status == "succeeded"
    assert [j.id for j in jp.jobs.iter(schedule=schedule.id)] == [fired.job.id]
    assert jp.schedules.get(schedule.id).recent_firings[0]["outcome"] == "created"

    jp.schedules.delete(schedule.id)
    with pytest.raises(ApiError) as gone:
        jp.schedules.get(schedule.id)
    assert (gone.value.status, gone.value.code) == (404, "SCHEDULES.NOT_FOUND")


def test_step_types_health_and_configuration_from_the_environment(jp, live_api, token, monkeypatch):
    steps = {s.name: s for s in jp.steps()}
    assert {"sleep", "log", "compute", "fail", "http"} <= steps.keys()
    assert steps["sleep"].params_schema["required"] == ["seconds"]
    health = jp.health()
    assert health.ok and health.checks == {"database": "ok", "broker": "ok", "migrations": "ok"}

    monkeypatch.setenv("JOBPLATFORM_URL", live_api + "/api/v1/")
    monkeypatch.setenv("JOBPLATFORM_TOKEN", token)
    monkeypatch.delenv("JOBPLATFORM_API_KEY", raising=False)
    with Client() as from_env:
        assert from_env.url == live_api
        assert from_env.jobs.list().results == ()

    monkeypatch.setenv("JOBPLATFORM_TOKEN", "not-a-token")
    with Client() as wrong, pytest.raises(ApiError) as error:
        wrong.jobs.list()
    assert (error.value.status, error.value.code) == (401, "AUTH.INVALID_CREDENTIALS")


def test_an_unknown_job_is_a_typed_404(jp):
    with pytest.raises(ApiError) as error:
        jp.jobs.get(str(uuid.uuid4()))
    assert (error.value.status, error.value.code) == (404, "JOBS.NOT_FOUND")
    assert error.value.method == "GET" and "/api/v1/jobs/" in error.value.url
