"""The baseline: bare Celery with the platform's broker settings and a task that does nothing."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

app = Celery("baseline", broker=os.environ.get("BASELINE_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_transport_options={
        "visibility_timeout": 7500,
        "queue_order_strategy": "round_robin",
        "priority_steps": list(range(10)),
        "sep": ":",
    },
)


@app.task(name="baseline.noop")
def noop() -> None:
    """Nothing: what the platform adds on top is what the benchmark measures."""


_redis: Any = None


@app.task(name="baseline.started")
def started(since: float) -> None:
    """Nothing but noting, in the broker's Redis, how long after ``since`` it started."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(app.conf.broker_url)
    _redis.rpush("started", time.time() - since)


_client = None


@app.task(name="baseline.get")
def get(url: str) -> int:
    """One GET, as the platform's http step makes it (httpx, one pooled client per process,
    the body read): the I/O-bound scenario's bare side."""
    global _client
    if _client is None:
        import httpx

        _client = httpx.Client(timeout=10)
    response = _client.get(url)
    response.raise_for_status()
    return response.status_code
