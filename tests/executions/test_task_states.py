"""What Celery (and so Flower) says of each attempt, read from the real worker's task events;
and that saying it changes nothing about acknowledging its message."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.events import EventReceiver
from django.conf import settings

from executions.models import Execution
from jobplatform.celery import app as celery_app
from jobs.models import Job
from tests.support import await_finished, submit_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Events:
    """Every task event the worker sends, by task id, as Flower receives them."""

    def __init__(self) -> None:
        self.state = celery_app.events.State()
        self.types: dict[str, list[str]] = defaultdict(list)
        self.ready = threading.Event()
        self.receiver: EventReceiver | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        self.state.event(event)
        if event["type"].startswith("task-"):
            self.types[event["uuid"]].append(event["type"])

    def listen(self) -> None:
        events = self

        class Receiver(EventReceiver):
            def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
                super().on_consume_ready(*args, **kwargs)
                events.ready.set()

        with celery_app.connection_for_read() as connection:
            self.receiver = Receiver(connection, handlers={"*": self.on_event}, app=celery_app)
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def task_state(self, task_id: str) -> str | None:
        task = self.state.tasks.get(task_id)
        return task.state if task else None


@pytest.fixture
def events(platform) -> Iterator[Events]:
    """Task events switched on in the platform's worker (as Flower does) while a test runs."""
    log = Events()
    thread = threading.Thread(target=log.listen, daemon=True)
    thread.start()
    assert log.ready.wait(30), "the event receiver did not start"
    control = celery_app.control
    replies = control.broadcast("enable_events", destination=[platform.hostname], reply=True)
    assert replies, "the worker did not switch its task events on"
    try:
        yield log
    finally:
        control.broadcast("disable_events", destination=[platform.hostname], reply=True)
        if log.receiver is not None:
            log.receiver.should_stop = True
        thread.join(timeout=10)


def delivery(job_id: str, attempt: int = 1) -> str:
    return Execution.objects.get(job_id=job_id, attempt=attempt).delivery_id


def unacked_task_ids(client: redis.Redis) -> set[str]:
    """Task ids of the messages Redis holds as delivered but not acknowledged."""
    ids = set()
    for raw in client.hvals("unacked"):
        payload, _exchange, _queue = json.loads(raw)
        ids.add(payload["headers"]["id"])
    return ids


def waiting_task_ids(client: redis.Redis) -> set[str]:
    return {
        json.loads(raw)["headers"]["id"]
        for name in client.scan_iter("default*")
        if client.type(name) == b"list"
        for raw in client.lrange(name, 0, -1)
    }


def test_the_task_state_is_the_attempts_outcome_and_every_message_is_acked(platform, api, events):
    log = [{"type": "log", "params": {"message": "fine"}}]
    succeeded = submit_job(api, log)
    retried = submit_job(api, [{"type": "fail", "params": {"times": 1}}], max_retries=2)
    failed = submit_job(api, [{"type": "fail", "params": {"mode": "permanent"}}])
    cancelled = submit_job(api, [{"type": "sleep", "params": {"seconds": 30}}])
    wait_for(lambda: Job.objects.get(id=cancelled).status == "running", what="the sleep to start")
    assert api.post(f"/api/v1/jobs/{cancelled}/cancel/").status_code == 200
    for job_id in (succeeded, retried, failed, cancelled):
        await_finished(api, job_id)
    tasks = {name: delivery(job_id) for name, job_id in [
        ("succeeded", succeeded), ("retried", retried), ("failed", failed),
        ("cancelled", cancelled),
    ]}  # fmt: skip
    tasks["retry"] = delivery(retried, attempt=2)

    def final_states() -> dict[str, str | None] | None:
        states = {name: events.task_state(task_id) for name, task_id in tasks.items()}
        return states if None not in states.values() and "STARTED" not in states.values() else None

    assert wait_for(final_states, what="every task's last event") == {
        "succeeded": "SUCCESS",
        # Its next attempt is the dispatcher's message (the release publishes retries when due),
        # a task of its own: the first ends RETRY, the second SUCCESS.
        "retried": "RETRY",
        "retry": "SUCCESS",
        "failed": "FAILURE",
        "cancelled": "REVOKED",
    }
    assert "task-retried" in events.types[tasks["retried"]]
    assert "AttemptFailed" in events.state.tasks[tasks["failed"]].exception
    # Expected, as ``throws`` declares it: logged without a traceback, not as an unpickleable
    # exception's wrapper.
    platform.await_worker_log(f"Task executions.run_job[{tasks['failed']}] raised expected")
    assert events.state.tasks[tasks["succeeded"]].result == "'succeeded'"

    # Nothing changed for the broker: each message was acknowledged, none waits to come back.
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        wait_for(
            lambda: not (unacked_task_ids(client) & set(tasks.values())),
            what="every message to be acknowledged",
        )
        assert not waiting_task_ids(client) & set(tasks.values())
    finally:
        client.close()
    assert Execution.objects.filter(job_id=failed).count() == 1
    assert Execution.objects.filter(job_id=cancelled).get().status == "cancelled"


def test_a_job_is_found_by_the_celery_task_id_of_its_attempt(platform, api):
    job_id = submit_job(api, [{"type": "fail", "params": {"times": 1}}], max_retries=2)
    assert await_finished(api, job_id)["status"] == "succeeded"
    for attempt in (1, 2):  # each attempt's message, a task of its own
        found = api.get("/api/v1/jobs/", {"delivery_id": delivery(job_id, attempt)}).json()
        assert [job["id"] for job in found["results"]] == [job_id]
    assert api.get("/api/v1/jobs/", {"delivery_id": "no-such-task"}).json()["results"] == []
