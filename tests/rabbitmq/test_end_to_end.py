"""End to end over RabbitMQ: a real node, worker and dispatcher; jobs through the REST API.

The same paths as tests/executions/test_run_job.py takes over Redis (success, a retry, a
cancel, a permanent failure), on the queue ``rabbitmq``; and what only RabbitMQ has: quorum
queues, the broker holding a retry's backoff, message priority on classic queues.
"""

from __future__ import annotations

import uuid

import amqp
import kombu
import pytest

from deadletter.models import DeadLetter
from jobs.dispatcher import publish_attempts, send_run_job
from jobs.services.release import ReleasedJob
from tests.rabbitmq.conftest import QUEUE, rabbit_app
from tests.support import await_finished as finished
from tests.support import job_detail as detail
from tests.support import submit_job as submit
from tests.support import wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]

e2e = pytest.mark.django_db(transaction=True)


def key() -> str:
    return uuid.uuid4().hex


def declare(rabbitmq, queue: kombu.Queue) -> None:
    with kombu.Connection(rabbitmq.url) as connection:
        queue(connection.default_channel).declare()


@e2e
def test_a_job_runs_every_step_over_rabbitmq_on_a_quorum_queue(
    rabbit_platform, rabbitmq, api, http_target
):
    k = key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{k}", "method": "POST"}},
            {"type": "reverse", "params": {"text": "abc"}},
        ],
        queue=QUEUE,
    )
    job = finished(api, job_id)
    assert job["status"] == "succeeded", job
    [execution] = job["executions"]
    assert execution["worker"].startswith("test-worker-rabbitmq-")
    assert execution["steps"][1]["output"]["text"] == "cba"
    assert http_target.count(f"/ok/{k}") == 1
    # The queue is a quorum queue: RabbitMQ refuses to declare it again as a classic one.
    with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
        declare(rabbitmq, kombu.Queue(QUEUE, durable=True, queue_arguments={}))


@e2e
def test_a_transient_failure_retries_on_rabbitmq_released_by_the_dispatcher(
    rabbit_platform, rabbitmq, api, http_target
):
    flaky, last = key(), key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/flaky/2/{flaky}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{last}"}},
        ],
        queue=QUEUE,
        max_retries=3,
    )
    job = finished(api, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert [e["status"] for e in job["executions"]] == ["failed", "failed", "succeeded"]
    assert http_target.count(f"/flaky/2/{flaky}") == 3
    assert http_target.count(f"/ok/{last}") == 1
    # Each failed delivery ended as a retry in Celery's events (Flower), and its next attempt
    # waited in PostgreSQL for the dispatcher's release, not in RabbitMQ's delay queues.
    output = rabbit_platform.worker_output()
    assert "retry: attempt 1 failed; attempt 2 is due in" in output
    assert "retry: attempt 2 failed; attempt 3 is due in" in output


@e2e
def test_cancelling_a_running_job_stops_it_at_the_next_step(rabbit_platform, api, http_target):
    gate, after = key(), key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/block/{gate}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{after}"}},
        ],
        queue=QUEUE,
    )
    wait_for(lambda: http_target.count(f"/block/{gate}") == 1, what="the first step to run")
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    http_target.release(gate)
    job = wait_for(
        lambda: (d := detail(api, job_id))["executions"][0]["status"] != "running" and d,
        what="the attempt to stop",
    )
    assert job["executions"][0]["status"] == "cancelled"
    assert [s["index"] for s in job["executions"][0]["steps"]] == [0]
    assert http_target.count(f"/ok/{after}") == 0


@e2e
def test_a_permanent_failure_is_dead_lettered(rabbit_platform, api):
    job_id = submit(api, [{"type": "fail", "params": {"mode": "permanent"}}], queue=QUEUE)
    job = finished(api, job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert DeadLetter.objects.filter(job_id=job_id, reason="permanent").exists()


def test_a_copied_message_is_the_one_celery_builds_on_rabbitmq(rabbitmq):
    """The dispatcher's copied messages (RunJobMessages) on AMQP: the same properties, headers,
    exchange and routing as the message send_task builds, but for their own ids."""
    probe = f"probe-{key()}"
    app = rabbit_app(rabbitmq.url, queues=[probe], queue_type="quorum")
    first = ReleasedJob(id=uuid.uuid4(), queue=probe, priority=5, attempt=1, timeout=60)
    job = ReleasedJob(id=uuid.uuid4(), queue=probe, priority=8, attempt=3, timeout=120)
    assert publish_attempts([first, job], app=app) == [first, job]
    with app.producer_or_acquire() as producer:
        send_run_job(app, job, producer)
    messages = []
    with kombu.Connection(rabbitmq.url) as connection:
        queue = app.amqp.queues[probe](connection.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
        queue.delete()
    assert [m.headers["argsrepr"] for m in messages] == [
        repr([str(first.id), 1]),
        repr([str(job.id), 3]),
        repr([str(job.id), 3]),
    ]
    copied, by_celery = messages[1], messages[2]
    for message in (copied, by_celery):
        assert message.headers.pop("id") == message.headers.pop("root_id")
        message.properties.pop("correlation_id")
    assert copied.headers == by_celery.headers
    assert copied.properties == by_celery.properties
    assert copied.delivery_info["exchange"] == by_celery.delivery_info["exchange"] == probe
    assert copied.properties["priority"] == 8  # RabbitMQ serves the highest first
    assert copied.properties["delivery_mode"] == 2  # persistent


def test_on_classic_queues_the_most_urgent_job_is_delivered_first(rabbitmq):
    """RABBITMQ_QUEUE_TYPE=classic: a priority queue (x-max-priority 9); the API's priority 9
    leaves first whatever the order of publication."""
    probe = f"probe-{key()}"
    app = rabbit_app(rabbitmq.url, queues=[probe], queue_type="classic")
    jobs = [
        ReleasedJob(id=uuid.uuid4(), queue=probe, priority=priority, attempt=1, timeout=60)
        for priority in (0, 5, 9, 2)
    ]
    assert publish_attempts(jobs, app=app) == jobs
    with kombu.Connection(rabbitmq.url) as connection:
        queue = app.amqp.queues[probe](connection.default_channel)
        order = []
        while (message := queue.get(no_ack=True)) is not None:
            order.append(message.properties["priority"])
        queue.delete()
    assert order == [9, 5, 2, 0]
