"""The broker is chosen by its URL alone: what the settings load for Redis and for RabbitMQ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from jobplatform import brokers

REPO = Path(__file__).resolve().parents[2]


def loaded(**variables: str) -> dict:
    """The broker settings of the real settings module in a fresh process, with ``variables``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROKER_", "REDIS_", "RABBITMQ_", "CELERY_"))
    }
    env |= {"DJANGO_SETTINGS_MODULE": "jobplatform.settings", **variables}
    code = (
        "import json; from django.conf import settings; from jobplatform.celery import app;"
        "c = app.conf;"
        "print(json.dumps({'url': c.broker_url, 'options': c.broker_transport_options,"
        " 'transport': c.broker_transport,"
        " 'cache': settings.CACHES['default']['LOCATION'],"
        " 'queues': [[q.name, q.exchange.name, q.exchange.type, q.routing_key, q.durable,"
        " q.queue_arguments] for q in c.task_queues or []],"
        " 'missing': [c.task_create_missing_queue_type,"
        " c.task_create_missing_queue_exchange_type]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_redis_by_default_with_its_visibility_timeout_and_priority_lists():
    conf = loaded(REDIS_URL="redis://redis:6379/0", REDIS_PASSWORD="pw")
    assert conf["url"] == "redis://:pw@redis:6379/0"
    assert conf["cache"] == conf["url"]  # the throttles' counts
    assert conf["options"]["visibility_timeout"] == 3600 + 3600 + 300
    assert conf["options"]["priority_steps"] == list(range(10))
    assert conf["queues"] == []  # Celery declares each queue as it meets it
    assert conf["transport"] == "jobplatform.kombu_redis:Transport"


def test_broker_url_wins_and_rabbitmq_gets_durable_quorum_queues_and_confirms():
    conf = loaded(
        REDIS_URL="redis://redis:6379/0",
        BROKER_URL="amqp://jobplatform@rabbitmq:5672/jobs",
        BROKER_PASSWORD="p@ss",
        JOBPLATFORM_QUEUES="default,reports",
    )
    assert conf["url"] == "amqp://jobplatform:p%40ss@rabbitmq:5672/jobs"
    assert conf["cache"] == "redis://redis:6379/0"  # Redis stays Django's cache
    # No visibility timeout: RabbitMQ redelivers only when the consumer's connection goes.
    assert conf["options"] == {"confirm_publish": True}
    assert conf["queues"] == [
        ["default", "default", "topic", "default", True, {"x-queue-type": "quorum"}],
        ["reports", "reports", "topic", "reports", True, {"x-queue-type": "quorum"}],
        # JOBPLATFORM_WEBHOOK_QUEUE, declared as the job queues are (retries wait in it).
        ["webhooks", "webhooks", "topic", "webhooks", True, {"x-queue-type": "quorum"}],
    ]
    assert conf["missing"] == ["quorum", "topic"]
    assert conf["transport"] is None  # kombu's, from the scheme


def test_rabbitmq_classic_queues_carry_priorities():
    conf = loaded(
        REDIS_URL="redis://redis:6379/0",
        BROKER_URL="amqp://rabbitmq//",
        RABBITMQ_QUEUE_TYPE="classic",
    )
    assert [queue[0] for queue in conf["queues"]] == ["default", "webhooks"]
    for *_, arguments in conf["queues"]:
        assert arguments == {"x-queue-type": "classic", "x-max-priority": 9}


def test_a_broker_url_of_another_kind_or_queue_type_is_refused():
    with pytest.raises(brokers.BrokerConfigError, match="unsupported broker URL scheme 'sqs'"):
        brokers.broker_kind("sqs://queue")
    with pytest.raises(brokers.BrokerConfigError, match="quorum or classic"):
        brokers.BrokerSettings.for_url(
            "amqp://h//", queues=["q"], visibility_timeout=1, rabbitmq_queue_type="stream"
        )


@pytest.mark.parametrize(
    ("kind", "priority", "expected"), [("redis", 9, 0), ("redis", 0, 9), ("rabbitmq", 9, 9)]
)
def test_the_most_urgent_job_gets_the_priority_each_broker_serves_first(kind, priority, expected):
    assert brokers.message_priority(kind, priority) == expected


def app_on(url: str, queue_type: brokers.QueueType = "quorum") -> Celery:
    broker = brokers.BrokerSettings.for_url(
        url, queues=["q"], visibility_timeout=60, rabbitmq_queue_type=queue_type
    )
    app = Celery("t", set_as_current=False)
    app.conf.update(broker_url=broker.url, task_queues=broker.queues)
    return app


@pytest.mark.parametrize(
    ("url", "queue_type", "seconds", "expected"),
    [
        # Quorum queues: Celery sends the countdown through RabbitMQ's delay queues, which count
        # whole seconds and refuse less than one.
        ("amqp://h//", "quorum", 0.05, 1.0),
        ("amqp://h//", "quorum", 2.3, 3.0),
        ("amqp://h//", "quorum", None, None),
        # Elsewhere the worker holds the message until its ETA: any fraction will do.
        ("amqp://h//", "classic", 0.05, 0.05),
        ("redis://h/0", "quorum", 0.05, 0.05),
    ],
)
def test_a_countdown_is_whole_seconds_only_where_rabbitmq_holds_it(
    url, queue_type, seconds, expected
):
    assert brokers.message_countdown(app_on(url, queue_type), seconds) == expected


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://h:6379/0", brokers.REDIS_TRANSPORT),
        # kombu reads these schemes itself (TLS, a Unix socket): its transport, untouched.
        ("rediss://h:6379/0", None),
        ("redis+socket:///tmp/redis.sock", None),
        ("amqp://h//", None),
    ],
)
def test_plain_redis_gets_the_transport_with_one_command_client(url, transport):
    broker = brokers.BrokerSettings.for_url(url, queues=["q"], visibility_timeout=60)
    assert broker.transport == transport


def test_one_command_client_per_pool_and_messages_flow_and_are_acknowledged():
    """kombu_redis.Channel hands every command the same client of its pool, through a real
    Redis: deliveries are recorded as unacknowledged and their acks clear them, as with kombu's
    own channel; a channel whose pool was replaced (a reconnection) gets a new client."""
    from django.conf import settings
    from kombu import Connection, Queue

    from jobplatform.kombu_redis import Transport

    name = "test-kombu-redis-" + os.urandom(4).hex()
    queue = Queue(name, routing_key=name)
    with Connection(settings.CELERY_BROKER_URL, transport=Transport) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        with connection.Producer() as producer:
            for i in range(3):
                producer.publish({"i": i}, routing_key=name, declare=[queue])
        received = []
        for _ in range(3):
            message = queue(channel).get(no_ack=False)
            assert message is not None
            # Recorded as unacknowledged until the ack, by the one client.
            assert channel.client.hexists(channel.unacked_key, message.delivery_tag)
            received.append(message.payload["i"])
            message.ack()
            assert not channel.client.hexists(channel.unacked_key, message.delivery_tag)
        assert received == [0, 1, 2]
        channel._pool = None  # what kombu does to a channel it reconnects
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
        queue(channel).delete()
