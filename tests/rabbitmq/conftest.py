"""The platform over RabbitMQ: the session's node (tests/servers.py), a worker and a dispatcher
serving the queue ``rabbitmq`` of the test database, with the production choices of
jobplatform/brokers.py: quorum queues on topic exchanges, publisher confirms, and retries that
wait in RabbitMQ's delay queues."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from jobplatform import brokers
from jobplatform.celery import app as celery_app
from tests.conftest import Platform, running_platform
from tests.servers import RabbitMQ

QUEUE = "rabbitmq"


@pytest.fixture(scope="module")
def rabbit_platform(
    django_db_setup: Any, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    with running_platform(
        tmp_path_factory.mktemp("rabbit-platform"),
        queues=QUEUE,
        env={"TEST_BROKER_URL": rabbitmq.url},
        name="test-worker-rabbitmq",
    ) as plat:
        yield plat


def rabbit_app(url: str, *, queues: list[str], queue_type: brokers.QueueType) -> Celery:
    """The project's Celery configuration on RabbitMQ, in an app of this test's own (the test
    process's own app speaks to the session's Redis)."""
    app = Celery("jobplatform-rabbitmq-test", set_as_current=False)
    broker = brokers.BrokerSettings.for_url(
        url, queues=queues, visibility_timeout=0, rabbitmq_queue_type=queue_type
    )
    app.conf.update(
        {key: value for key, value in celery_app.conf.items() if not key.startswith("broker_")},
        broker_url=broker.url,
        broker_transport_options=broker.transport_options,
        task_queues=broker.queues,
        task_create_missing_queue_type=broker.missing_queue_type,
        task_create_missing_queue_exchange_type=broker.missing_queue_exchange_type,
    )
    return app
