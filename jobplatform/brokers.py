"""The broker, Redis or RabbitMQ, chosen by its URL alone (docs/deploy.md#choosing-the-broker).

Redis (``redis://``, ``rediss://``) is the default: fast and simple, but a message not
acknowledged within the visibility timeout is delivered again, and a Redis without persistence
loses every message when it restarts (the dispatcher publishes them again from PostgreSQL).

RabbitMQ (``amqp://``, ``amqps://``) keeps its messages across a restart and never redelivers a
message while the worker that holds it is connected. Each platform queue is declared durable,
bound to a topic exchange of its own name, as a quorum queue (replicated; the default) or a
classic priority queue (``RABBITMQ_QUEUE_TYPE``); every publish waits for the broker's confirm.

What differs between them is here: the Celery settings (:class:`BrokerSettings`), the order of
message priorities (:func:`message_priority`) and the broker-held delays of quorum queues
(:func:`message_countdown`). Plain Python and kombu, no Django: settings.py imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from celery import Celery
from kombu import Exchange, Queue

BrokerKind = Literal["redis", "rabbitmq"]
QueueType = Literal["quorum", "classic"]

_SCHEMES: dict[str, BrokerKind] = {
    "redis": "redis",
    "rediss": "redis",
    "redis+socket": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
}
# kombu's Redis transport less the Redis client object it builds per command
# (jobplatform/kombu_redis.py): redis:// only; kombu reads rediss:// and redis+socket:// itself.
REDIS_TRANSPORT = "jobplatform.kombu_redis:Transport"
# The API's priorities are 0 (least urgent) to 9; a classic RabbitMQ queue orders 0..MAX.
MAX_PRIORITY = 9


class BrokerConfigError(ValueError):
    """A broker URL of an unsupported scheme, or an unknown queue type."""


def broker_kind(url: str) -> BrokerKind:
    scheme = urlsplit(url).scheme
    try:
        return _SCHEMES[scheme]
    except KeyError:
        raise BrokerConfigError(
            f"unsupported broker URL scheme {scheme!r}: use redis://, rediss://, amqp:// or amqps://"
        ) from None


def rabbitmq_queue(name: str, queue_type: QueueType) -> Queue:
    """A platform queue on RabbitMQ: durable, on a topic exchange of its own name.

    Topic, not Celery's default direct exchange: a quorum queue's countdowns (a retry's backoff)
    wait in RabbitMQ's delay queues ("native delayed delivery"), which hand the message back
    through a topic binding; on a direct exchange Celery would make the worker hold the message
    until it is due, a prefetch slot taken for the whole backoff.
    """
    if queue_type == "quorum":
        # Replicated, and written to disk before the publish is confirmed. No message priority
        # before RabbitMQ 4.0; from 4.0 two levels (5-9 before 0-4).
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    else:
        # One node, but every priority honoured.
        arguments = {"x-queue-type": "classic", "x-max-priority": MAX_PRIORITY}
    return Queue(
        name,
        Exchange(name, type="topic", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=arguments,
    )


@dataclass(frozen=True)
class BrokerSettings:
    """The Celery settings that depend on the broker (settings.py and tests/settings.py)."""

    url: str  # CELERY_BROKER_URL
    transport_options: dict[str, Any]  # CELERY_BROKER_TRANSPORT_OPTIONS
    # CELERY_TASK_QUEUES: None on Redis, where Celery declares each queue as it meets it.
    queues: list[Queue] | None = None
    # CELERY_TASK_CREATE_MISSING_QUEUE_TYPE and _EXCHANGE_TYPE: a queue outside
    # JOBPLATFORM_QUEUES (a worker's --queues) declared as the others are.
    missing_queue_type: QueueType | None = None
    missing_queue_exchange_type: str | None = None
    # CELERY_BROKER_TRANSPORT: None is kombu's transport for the URL's scheme. On redis://,
    # kombu's Redis transport with one command client per pool (jobplatform/kombu_redis.py).
    transport: str | None = None

    @classmethod
    def for_url(
        cls,
        url: str,
        *,
        queues: list[str],
        visibility_timeout: int,
        rabbitmq_queue_type: QueueType = "quorum",
    ) -> BrokerSettings:
        if rabbitmq_queue_type not in ("quorum", "classic"):
            raise BrokerConfigError(
                f"RABBITMQ_QUEUE_TYPE must be quorum or classic, not {rabbitmq_queue_type!r}"
            )
        if broker_kind(url) == "redis":
            return cls(
                url=url,
                transport=REDIS_TRANSPORT if urlsplit(url).scheme == "redis" else None,
                # Redis redelivers a message not acknowledged within the visibility timeout: it
                # must outlast the longest job (settings.JOBPLATFORM_VISIBILITY_TIMEOUT says why).
                # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
                transport_options={
                    "visibility_timeout": visibility_timeout,
                    # Message priority: each of the ten priorities is a Redis list of its own
                    # (<queue> for 0, <queue>:N for N), and a worker's BRPOP names every queue's
                    # priority-0 list first, then priority 1, and so on, so 0 is served first
                    # (the dispatcher publishes 9 - job.priority).
                    "priority_steps": list(range(10)),
                    # The order of *queues* within one priority, not of messages: round robin
                    # puts the queue a worker just took from last in its next BRPOP, so every
                    # queue it serves progresses. Kombu's "priority" and "sorted" keep one
                    # order, and a busy first queue starves the rest.
                    # https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.redis.html
                    "queue_order_strategy": "round_robin",
                    "sep": ":",
                },
            )
        return cls(
            url=url,
            # Publisher confirms: a publish returns once RabbitMQ has the message (a quorum
            # queue: on disk), so a job the dispatcher counts as published cannot vanish.
            transport_options={"confirm_publish": True},
            queues=[rabbitmq_queue(name, rabbitmq_queue_type) for name in queues],
            missing_queue_type=rabbitmq_queue_type,
            missing_queue_exchange_type="topic",
        )


def message_priority(kind: BrokerKind, priority: int) -> int:
    """The priority of a message on a broker of ``kind`` for the API's ``priority`` (9 the most
    urgent). Redis serves the lowest number first (kombu's priority_steps); RabbitMQ the highest.
    """
    return MAX_PRIORITY - priority if kind == "redis" else priority


def native_delayed_delivery(app: Celery) -> bool:
    """Whether Celery sends this app's countdown messages through RabbitMQ's delay queues.

    It does on RabbitMQ when a queue is a quorum queue (celery.app.base.Celery.send_task).
    """
    if broker_kind(app.conf.broker_url) != "rabbitmq":
        return False
    return any(
        (queue.queue_arguments or {}).get("x-queue-type") == "quorum"
        for queue in app.amqp.queues.values()
    )


def message_countdown(app: Celery, seconds: float | None) -> float | None:
    """``seconds`` as the broker can hold it.

    RabbitMQ's delay queues count whole seconds and Celery refuses a delay under one
    (kombu's calculate_routing_key): a countdown there is rounded up to the next second.
    """
    if not seconds or seconds <= 0 or not native_delayed_delivery(app):
        return seconds
    return float(max(1, math.ceil(seconds)))


def declare_queues(app: Celery) -> None:
    """Declare every platform queue on RabbitMQ, consumed here or not, with its exchange.

    A worker with quorum queues binds every queue of the app to RabbitMQ's delay exchanges as it
    starts (Celery's DelayedDelivery bootstep), and fails loudly on a queue whose exchange does
    not exist yet: one no worker has consumed and no message has been published to. Declared
    first, each queue also keeps the messages published to it before any worker consumes it,
    including the delayed ones, which a topic exchange without a bound queue would drop.
    """
    if not native_delayed_delivery(app):
        return
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
