"""The dispatcher against real PostgreSQL and Redis: what it releases, and that it releases once."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from functools import partial

import psycopg
import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs.dispatcher import Dispatcher, publish_attempts
from jobs.models import Job
from jobs.services import DISPATCH_CHANNEL, JobSpec, job_submit
from tests.jobs.factories import JobFactory
from tests.support import wait_for

PROBE_QUEUE = "dispatch-probe"  # no worker consumes it: what was published stays in Redis


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for name in client.scan_iter(f"{PROBE_QUEUE}*"):
        client.delete(name)
    yield client
    for name in client.scan_iter(f"{PROBE_QUEUE}*"):
        client.delete(name)
    client.close()


def published_job_ids(client: redis.Redis) -> list[str]:
    """Decode every run_job message waiting on the probe queue (all priority levels)."""
    ids = []
    for name in client.scan_iter(f"{PROBE_QUEUE}*"):
        for raw in client.lrange(name, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] == "executions.run_job"
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            ids.append(args[0])
    return ids


def listener() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    conn = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    )
    conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
    return conn


@pytest.mark.django_db(transaction=True)
def test_a_submission_wakes_dispatchers_only_when_it_commits(user):
    with listener() as conn:
        with transaction.atomic():
            job_submit(
                owner=user,
                spec=JobSpec(name="n", steps=[{"type": "log", "params": {"message": "x"}}]),
            )
            assert list(conn.notifies(timeout=0.2)) == []  # not before commit
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_never_release_a_job_twice(user, broker):
    count = 300
    later = timezone.now() + timedelta(hours=1)
    Job.objects.bulk_create(
        JobFactory.build(owner=user, queue=PROBE_QUEUE, run_at=later) for _ in range(count)
    )
    # All become due at once, so both dispatchers compete for the same rows.
    Job.objects.update(run_at=timezone.now() - timedelta(seconds=1))
    released = {"a": 0, "b": 0}
    stop = threading.Event()

    def run(name: str) -> None:
        def publish(jobs):
            sent = publish_attempts(jobs)
            released[name] += len(sent)
            return sent

        try:
            Dispatcher(batch_size=7, poll=0.2, publish=publish, queues=[PROBE_QUEUE]).run(stop)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in released]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: not Job.objects.filter(status=Job.Status.PENDING).exists(),
            what="every job to be released",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    ids = published_job_ids(broker)
    assert len(ids) == count
    assert len(set(ids)) == count
    assert set(ids) == {str(i) for i in Job.objects.values_list("id", flat=True)}
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == count


@pytest.mark.django_db(transaction=True)
def test_jobs_that_cannot_be_published_go_back_to_pending(user):
    job = JobFactory(owner=user, queue=PROBE_QUEUE)  # out of the session dispatcher's reach
    # A broker that refuses connections: nothing listens on port 1.
    down = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.broker_connection_retry = False
    down.conf.task_publish_retry = False

    dispatcher = Dispatcher(publish=partial(publish_attempts, app=down), queues=[PROBE_QUEUE])
    assert dispatcher.dispatch_once() == 0
    job.refresh_from_db()
    assert (job.status, job.queued_at) == (Job.Status.PENDING, None)


@pytest.mark.django_db
def test_the_due_scan_uses_the_partial_index_whatever_the_statistics(user):
    JobFactory.create_batch(50, owner=user, status=Job.Status.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM jobs_job WHERE status = 'pending' AND run_at <= now() "
            "ORDER BY run_at LIMIT 10"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "job_pending_run_at" in plan, plan
