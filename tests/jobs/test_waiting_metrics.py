"""The metrics' view of waiting work, read from PostgreSQL at scrape: unfinished jobs by queue and
state, and waiting jobs by why they wait (flow control's holds)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Hold, Queue
from jobs.selectors import job_queue_states, job_waiting_by_reason
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_waiting_jobs_are_counted_by_the_reason_waiting_for_gives(user):
    now = timezone.now()
    past, future = now - timedelta(seconds=30), now + timedelta(hours=1)

    def job(queue: str, status: str = "pending", **fields) -> None:
        JobFactory(owner=user, queue=f"wm-{queue}", status=status, **{"run_at": past, **fields})

    job("open")  # due, within its limits
    job("open", run_at=future)
    job("open", "retrying", attempts=1, next_attempt_at=future)
    job("open", "retrying", attempts=1, next_attempt_at=past)
    Queue.objects.create(name="wm-paused", paused=True, paused_at=now)
    job("paused")
    Queue.objects.create(name="wm-cap", max_in_flight=1)
    job("cap", "running", attempts=1)
    job("cap")
    job("key", concurrency_key="k", max_concurrency=1, hold=Hold.CONCURRENCY_KEY)

    counts = {k: n for k, n in job_waiting_by_reason().items() if k[0].startswith("wm-")}
    assert counts == {
        ("wm-open", "release"): 2,
        ("wm-open", "run_at"): 1,
        ("wm-open", "retry_backoff"): 1,
        ("wm-paused", "paused_queue"): 1,
        ("wm-cap", "queue_cap"): 1,
        ("wm-key", "concurrency_key"): 1,
    }
    states = {
        (s.queue, s.state): (s.count, s.oldest_due_age)
        for s in job_queue_states()
        if s.queue == "wm-open" or s.queue == "wm-cap"
    }
    assert set(states) == {
        ("wm-open", "pending"),
        ("wm-open", "scheduled"),
        ("wm-open", "retrying"),
        ("wm-cap", "pending"),
        ("wm-cap", "running"),
    }
    count, age = states[("wm-open", "pending")]
    assert count == 1 and 29 < age < 60  # the database's clock
    assert states[("wm-open", "scheduled")] == (1, None)
    count, age = states[("wm-open", "retrying")]
    assert count == 2 and 29 < age < 60  # the most overdue retry
    assert states[("wm-cap", "running")] == (1, None)
