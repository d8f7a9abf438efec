"""The dispatcher notices that the broker lost its messages, and publishes those jobs again at
once (a Redis of the test's own that it restarts and flushes)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.utils import timezone

from jobs.broker import MARGIN, BrokerWatch
from jobs.dispatcher import Dispatcher
from jobs.models import Job
from jobs.services import job_release_after_broker_loss
from tests.jobs.factories import JobFactory
from tests.jobs.test_dispatcher import PROBE_QUEUE, broker, raw_messages_of  # noqa: F401
from tests.support import free_port, wait_for

pytestmark = pytest.mark.django_db


class OwnRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> datetime:
        """Start it empty; return a moment just before it started."""
        before = timezone.now()
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=10, what="redis to answer")
        client.close()
        return before

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_the_watch_tells_a_restart_and_a_flush_from_nothing(own_redis):
    started = own_redis.start()
    watch = BrokerWatch(own_redis.url)
    # At start: whatever was published before the broker started is lost.
    first = watch.check()
    assert first is not None
    assert started - timedelta(seconds=1) <= first - MARGIN <= timezone.now()
    assert watch.check() is None
    assert watch.check() is None

    redis.Redis.from_url(own_redis.url).flushall()
    flushed = watch.check()
    assert flushed is not None and flushed <= timezone.now()
    assert watch.check() is None

    own_redis.stop()
    assert watch.check() is None  # unreachable: nothing to tell yet
    restarted = own_redis.start()
    lost_before = watch.check()
    assert lost_before is not None
    assert restarted - timedelta(seconds=1) <= lost_before - MARGIN <= timezone.now()
    assert watch.check() is None
    watch.close()


def test_a_watch_of_another_broker_kind_stays_silent():
    assert BrokerWatch("amqp://guest@127.0.0.1//").check() is None


def test_after_a_loss_the_queued_jobs_published_before_it_come_back(user):
    """A retrying job has no message on the broker (the release publishes its next attempt when
    due): only the queued ones published to the old broker come back."""
    now = timezone.now()
    before, after = now - timedelta(seconds=30), now + timedelta(hours=1)

    def job(status: str, **fields) -> Job:
        return JobFactory.create(owner=user, queue=PROBE_QUEUE, status=status, **fields)

    queued = job("queued", queued_at=before, updated_at=before, trace_id="t-queued")
    again = job("queued", attempts=2, queued_at=before, updated_at=before)
    job("queued", queued_at=after, updated_at=after)  # published to the new broker
    job("retrying", attempts=1, updated_at=before, next_attempt_at=before)
    for status in ("pending", "running", "succeeded"):
        job(status, queued_at=before, updated_at=before)

    [first] = job_release_after_broker_loss(lost_before=now, limit=1, queues=[PROBE_QUEUE])
    rest = job_release_after_broker_loss(lost_before=now, limit=10, queues=[PROBE_QUEUE])
    released = {j.id: j for j in [first, *rest]}
    assert set(released) == {queued.id, again.id}
    assert released[queued.id].attempt == 1
    assert released[queued.id].trace_id == "t-queued"
    assert released[again.id].attempt == 3
    # Stamped: a second dispatcher that noticed the same loss publishes none of them again.
    assert job_release_after_broker_loss(lost_before=now, limit=10, queues=[PROBE_QUEUE]) == []
    queued.refresh_from_db()
    assert queued.status == "queued" and queued.queued_at > now


@pytest.mark.django_db(transaction=True)
def test_the_dispatcher_publishes_them_again_when_the_broker_restarts(
    user,
    own_redis,
    broker,  # noqa: F811
):
    own_redis.start()
    queued = JobFactory(owner=user, queue=PROBE_QUEUE, status="queued")
    Job.objects.filter(id=queued.id).update(queued_at=timezone.now() - timedelta(minutes=1))
    dispatcher = Dispatcher(queues=[PROBE_QUEUE])
    dispatcher.broker = BrokerWatch(own_redis.url)  # the broker it watches: the test's own
    try:
        # Its first look: the job's message went to a broker older than this one.
        assert dispatcher.recover_broker_loss() == 1
        assert dispatcher.recover_broker_loss() == 0  # nothing lost since
        own_redis.stop()
        own_redis.start()
        assert dispatcher.recover_broker_loss() == 1  # its message was on the old one too
    finally:
        dispatcher.broker.close()
    messages = [message["headers"] for _, message in raw_messages_of(broker, str(queued.id))]
    assert len(messages) == 2
    assert {(h["argsrepr"], h["trace_id"]) for h in messages} == {
        (f"['{queued.id}', 1]", queued.trace_id)
    }
