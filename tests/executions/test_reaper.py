"""Lost work is found again: attempts whose heartbeat stopped, and jobs whose message was lost."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from deadletter.models import DeadLetter
from executions.heartbeat import Heartbeat
from executions.models import Execution
from executions.reaper import execution_reap_lost
from jobs.dispatcher import Dispatcher
from jobs.models import Job
from jobs.services import job_cancel
from tests.jobs.factories import JobFactory
from tests.support import wait_for

PROBE = "dispatch-probe"  # no worker consumes it: what was published stays in Redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for name in client.scan_iter(f"{PROBE}*"):
        client.delete(name)
    yield client
    for name in client.scan_iter(f"{PROBE}*"):
        client.delete(name)
    client.close()


def published(client) -> list[tuple[str, int, dict]]:
    """(job id, attempt, message headers) of every run_job message on the probe queue."""
    found = []
    for name in client.scan_iter(f"{PROBE}*"):
        for raw in client.lrange(name, 0, -1):
            message = json.loads(raw)
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            found.append((args[0], args[1], message["headers"]))
    return found


def running(job: Job, *, attempt: int, silent_for: float) -> Execution:
    """Forge an attempt whose worker stopped beating ``silent_for`` seconds ago."""
    Job.objects.filter(id=job.id).update(status=Job.Status.RUNNING, attempts=attempt)
    beat = timezone.now() - timedelta(seconds=silent_for)
    return Execution.objects.create(
        job=job, attempt=attempt, worker="w@dead", started_at=beat, heartbeat_at=beat
    )


def test_a_silent_attempt_is_lost_and_its_job_retried(broker, user):
    job = JobFactory(owner=user, queue=PROBE, max_retries=3, retry_backoff=0, retry_jitter=False)
    execution = running(job, attempt=1, silent_for=60)
    alive = running(JobFactory(owner=user, queue=PROBE), attempt=1, silent_for=0)

    assert execution_reap_lost(lost_after=30) == 1
    execution.refresh_from_db()
    job.refresh_from_db()
    assert execution.status == Execution.Status.LOST
    assert execution.error["code"] == "EXECUTION.LOST" and "w@dead" in execution.error["message"]
    assert (job.status, job.last_error["code"]) == (Job.Status.RETRYING, "EXECUTION.LOST")
    assert published(broker) == []  # the next attempt is the dispatcher's to release, when due
    assert Dispatcher(queues=[PROBE]).dispatch_once() == 1
    [(job_id, attempt, headers)] = published(broker)
    assert (job_id, attempt) == (str(job.id), 2)
    assert headers["timelimit"][0] == job.timeout + 30  # the hard backstop
    assert headers["retries"] == 1
    alive.refresh_from_db()
    assert alive.status == Execution.Status.RUNNING  # a beating attempt is left alone
    assert execution_reap_lost(lost_after=30) == 0  # reaping is done once


def test_a_job_lost_too_many_times_fails_with_a_dead_letter(broker, user):
    job = JobFactory(owner=user, queue=PROBE, max_retries=1)
    running(job, attempt=2, silent_for=60)
    assert execution_reap_lost(lost_after=30) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert DeadLetter.objects.get(job=job).reason == DeadLetter.Reason.LOST
    assert published(broker) == []


def orphan(job: Job, *, attempt: int, claimed_ago: float) -> None:
    """Forge a RUNNING job whose attempt's Execution row is gone (deleted by hand)."""
    Job.objects.filter(id=job.id).update(
        status=Job.Status.RUNNING,
        attempts=attempt,
        updated_at=timezone.now() - timedelta(seconds=claimed_ago),
    )


def test_a_running_job_with_no_live_attempt_goes_back_on_the_retry_path(broker, user):
    job = JobFactory(owner=user, queue=PROBE, max_retries=3, retry_backoff=0, retry_jitter=False)
    orphan(job, attempt=1, claimed_ago=60)
    just_claimed = JobFactory(owner=user, queue=PROBE)
    orphan(just_claimed, attempt=1, claimed_ago=1)  # within the window: a claim may be under way
    long_running = JobFactory(owner=user, queue=PROBE)
    alive = running(long_running, attempt=1, silent_for=0)
    Job.objects.filter(id=long_running.id).update(updated_at=timezone.now() - timedelta(hours=1))

    assert execution_reap_lost(lost_after=30) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.RETRYING
    assert job.last_error["code"] == "EXECUTION.LOST"
    assert "no live attempt" in job.last_error["message"]
    assert published(broker) == []  # the next attempt is the dispatcher's to release, when due
    assert Dispatcher(queues=[PROBE]).dispatch_once() == 1
    assert [(j, a) for j, a, _ in published(broker)] == [(str(job.id), 2)]
    just_claimed.refresh_from_db()
    alive.refresh_from_db()
    assert just_claimed.status == Job.Status.RUNNING
    assert alive.status == Execution.Status.RUNNING
    assert Job.objects.get(id=long_running.id).status == Job.Status.RUNNING
    assert execution_reap_lost(lost_after=30) == 0


def test_a_running_job_with_no_live_attempt_and_no_retry_left_fails_with_a_dead_letter(
    broker, user
):
    job = JobFactory(owner=user, queue=PROBE, max_retries=0)
    orphan(job, attempt=1, claimed_ago=60)
    assert execution_reap_lost(lost_after=30) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    dead = DeadLetter.objects.get(job=job)
    assert (dead.reason, dead.state) == (DeadLetter.Reason.LOST, DeadLetter.State.OPEN)
    assert published(broker) == []


def test_a_cancelled_job_with_a_lost_attempt_stays_cancelled(broker, user):
    job = JobFactory(owner=user, queue=PROBE)
    execution = running(job, attempt=1, silent_for=60)
    assert job_cancel(job_id=job.id, actor=None)
    assert execution_reap_lost(lost_after=30) == 1
    job.refresh_from_db()
    execution.refresh_from_db()
    assert (job.status, execution.status) == (Job.Status.CANCELLED, Execution.Status.LOST)
    assert published(broker) == []


def test_jobs_whose_message_was_lost_are_published_again_once(broker, user):
    long_ago = timezone.now() - timedelta(minutes=10)
    queued = JobFactory(owner=user, queue=PROBE, status=Job.Status.QUEUED, queued_at=long_ago)
    fresh = JobFactory(owner=user, queue=PROBE, status=Job.Status.QUEUED, queued_at=timezone.now())
    dispatcher = Dispatcher(queues=[PROBE])
    assert dispatcher.release_lost() == 1
    assert dispatcher.release_lost() == 0  # the clock restarted: not again before the grace
    assert [(j, a) for j, a, _ in published(broker)] == [(str(queued.id), 1)]
    fresh.refresh_from_db()
    assert fresh.queued_at > long_ago


def test_an_overdue_retry_has_no_message_to_lose_it_is_released_when_due(broker, user):
    """A RETRYING job's next attempt is published by the release, not held in a worker as a
    countdown message: a restarted Redis or a killed worker cannot lose it."""
    long_ago = timezone.now() - timedelta(minutes=10)
    retrying = JobFactory(
        owner=user, queue=PROBE, status=Job.Status.RETRYING, attempts=2, next_attempt_at=long_ago
    )
    dispatcher = Dispatcher(queues=[PROBE])
    assert dispatcher.release_lost() == 0
    assert dispatcher.dispatch_once() == 1
    assert [(j, a) for j, a, _ in published(broker)] == [(str(retrying.id), 3)]


def test_a_dispatcher_serves_only_its_queues(broker, user):
    job = JobFactory(owner=user, queue=PROBE)
    assert Dispatcher(queues=["default"]).dispatch_once() == 0
    assert Dispatcher(queues=[PROBE]).dispatch_once() == 1
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED


def test_heartbeats_refresh_running_attempts_and_signal_cancellation(user):
    job = JobFactory(owner=user, queue=PROBE)  # the session platform's reaper serves 'default'
    execution = running(job, attempt=1, silent_for=60)
    heartbeat = Heartbeat(interval=3600)  # driven by hand below
    stop = heartbeat.track(execution.id)
    before = Execution.objects.get(id=execution.id).heartbeat_at

    heartbeat.beat_once()
    assert Execution.objects.get(id=execution.id).heartbeat_at > before
    assert not stop.is_set()

    job_cancel(job_id=job.id, actor=None)
    heartbeat.beat_once()
    assert stop.is_set()


def test_the_heartbeat_thread_beats_on_its_own(user):
    job = JobFactory(owner=user, queue=PROBE)  # the session platform's reaper serves 'default'
    execution = running(job, attempt=1, silent_for=60)
    heartbeat = Heartbeat(interval=0.05)
    heartbeat.track(execution.id)
    recent = timezone.now() - timedelta(seconds=5)
    try:
        wait_for(
            lambda: Execution.objects.get(id=execution.id).heartbeat_at > recent,
            timeout=10,
            what="the heartbeat thread to refresh heartbeat_at",
        )
    finally:
        heartbeat.untrack(execution.id)
