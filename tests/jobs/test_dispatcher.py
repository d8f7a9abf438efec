"""The dispatcher against real PostgreSQL and Redis: what it releases, and that it releases once."""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
import socket
import subprocess
import threading
from collections import Counter
from datetime import timedelta
from functools import partial
from uuid import uuid4

import psycopg
import pytest
import redis
from celery import Celery
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from executions.models import Execution
from executions.pipeline import execution_run
from executions.tasks import run_jobs
from jobplatform import logs
from jobplatform.celery import app as celery_app
from jobs.dispatcher import (
    HARD_TIME_LIMIT_MARGIN,
    Dispatcher,
    pack,
    publish_attempts,
    send_message,
    send_run_job,
)
from jobs.models import Job
from jobs.services import DISPATCH_CHANNEL, JobSpec, job_submit
from jobs.services.release import ReleasedJob
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


def probe_messages(client: redis.Redis) -> list[tuple[str, dict, str]]:
    """(Redis list, message, job id) of every job of every run_job or run_jobs message waiting
    on the probe queue, at every priority level."""
    found = []
    for name in client.scan_iter(f"{PROBE_QUEUE}*"):
        for raw in client.lrange(name, 0, -1):
            message = json.loads(raw)
            for job_id, _attempt in message_jobs(message):
                found.append((name.decode(), message, job_id))
    return found


def message_jobs(message: dict) -> list[tuple[str, int]]:
    """(job id, attempt) of each job a run_job or run_jobs message starts."""
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    if message["headers"]["task"] == "executions.run_job":
        return [(args[0], args[1])]
    assert message["headers"]["task"] == "executions.run_jobs"
    return [(job_id, attempt) for job_id, attempt in args[0]]


def published_job_ids(client: redis.Redis) -> list[str]:
    return [job_id for _, _, job_id in probe_messages(client)]


def raw_messages_of(client: redis.Redis, job_id: str) -> list[tuple[str, dict]]:
    """(Redis list, message) of every run_job message on the probe queue that starts ``job_id``."""
    return [(name, message) for name, message, of in probe_messages(client) if of == job_id]


def listener(channel: str = DISPATCH_CHANNEL) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    conn = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    )
    conn.execute(f"LISTEN {channel}")
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


@pytest.fixture
def unbounded_broker(settings):
    """No worker takes from the probe queue: no bound on what waits there (the default bound
    would stop the dispatcher at 100 QUEUED jobs)."""
    settings.JOBPLATFORM_DISPATCH_MAX_QUEUED = 0


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_never_release_a_job_twice(user, broker, unbounded_broker, settings):
    # The test settings' REDELIVER_AFTER (4 s) would let a loaded machine's slow run publish a
    # still-QUEUED job again through the release-lost chore: a second message this test is not
    # about (that path has its own tests).
    settings.JOBPLATFORM_REDELIVER_AFTER = 3600
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
        def publish(jobs, **options):
            sent = publish_attempts(jobs, **options)
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


@pytest.fixture
def full_redis(tmp_path):
    """A Redis of its own that refuses writes once it is nearly full (noeviction)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        wait_for(lambda: _pings(client), what="the private redis to answer")
        used = client.info("memory")["used_memory"]
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used + 256 * 1024)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_pipeline_fails_goes_back_whole_and_each_job_still_runs_once(
    user, full_redis, unbounded_broker
):
    """Part of the pipeline reached Redis before it refused the rest: the stale messages of the
    first try, delivered beside the fresh ones of the second, start no job twice."""
    count = 300
    jobs = JobFactory.create_batch(count, owner=user, queue=PROBE_QUEUE)
    port = full_redis.connection_pool.connection_kwargs["port"]
    app = Celery("full", broker=f"redis://127.0.0.1:{port}/0", set_as_current=False)
    app.conf.broker_transport_options = celery_app.conf.broker_transport_options
    app.conf.broker_connection_retry = False
    app.conf.task_publish_retry = False
    # One job per message, so that the pipeline breaks between jobs (batches: the next test).
    publish = partial(publish_attempts, app=app, batch_max=1)
    dispatcher = Dispatcher(batch_size=count, publish=publish, queues=[PROBE_QUEUE])

    assert dispatcher.dispatch_once() == 0
    assert Job.objects.filter(status=Job.Status.PENDING).count() == count
    stale = published_job_ids(full_redis)
    assert 0 < len(stale) < count  # the uncertain case: some arrived, some did not

    full_redis.config_set("maxmemory", 0)
    assert dispatcher.dispatch_once() == count
    messages = published_job_ids(full_redis)
    assert len(messages) == count + len(stale)

    # Deliver every message, stale ones included, as a worker would.
    outcomes = [
        execution_run(job_id=job_id, attempt=1, delivery_id=str(n), worker="w").status
        for n, job_id in enumerate(messages)
    ]
    assert outcomes.count("succeeded") == count
    assert outcomes.count("duplicate") == len(stale)
    assert Job.objects.filter(status=Job.Status.SUCCEEDED, attempts=1).count() == count
    assert Execution.objects.count() == count
    assert {j.id for j in jobs} == set(Job.objects.values_list("id", flat=True))


@pytest.mark.parametrize("attempt", [1, 3])
def test_a_copied_message_is_the_one_celery_builds_for_the_job(broker, attempt):
    """The dispatcher copies each queue's first message for the rest of its batch; the copy must
    be what send_task would have sent for that job, but for its own task id."""
    first = ReleasedJob(
        id=uuid4(), queue=PROBE_QUEUE, priority=5, attempt=1, timeout=60, trace_id="a" * 32
    )
    job = ReleasedJob(
        id=uuid4(), queue=PROBE_QUEUE, priority=8, attempt=attempt, timeout=120, trace_id="b" * 32
    )
    assert publish_attempts([first, job]) == [first, job]
    with celery_app.producer_or_acquire() as producer:
        send_run_job(celery_app, job, producer)
    [(copy_list, copied), (celery_list, by_celery)] = raw_messages_of(broker, str(job.id))
    ids = set()
    for message in (copied, by_celery):
        headers, properties = message["headers"], message["properties"]
        task_id = headers.pop("id")
        assert headers.pop("root_id") == properties.pop("correlation_id") == task_id
        ids.add(task_id)
        properties.pop("delivery_tag")
    assert len(ids) == 2
    assert copy_list == celery_list  # the same priority list of the queue
    assert copied == by_celery
    assert copied["headers"]["timelimit"] == [120 + HARD_TIME_LIMIT_MARGIN, None]
    # Celery's count of earlier deliveries: a later attempt shows in Flower as a retry.
    assert copied["headers"]["retries"] == attempt - 1
    assert copied["headers"]["eta"] is None
    assert copied["headers"]["trace_id"] == "b" * 32  # the worker's log lines carry it


def test_with_task_sent_events_on_every_message_is_sent_by_celery(broker):
    """Flower switches task-sent events on; then each message goes through send_task, which
    sends the event, so every message has its own: none is copied from the first."""
    jobs = [
        ReleasedJob(id=uuid4(), queue=PROBE_QUEUE, priority=5, attempt=1, timeout=60)
        for _ in range(3)
    ]
    sent_events = []

    def count(sender=None, headers=None, **_):
        sent_events.append(headers["id"])

    before_task_publish.connect(count)
    celery_app.conf.task_send_sent_event = True
    try:
        assert publish_attempts(jobs) == jobs
    finally:
        celery_app.conf.task_send_sent_event = False
        before_task_publish.disconnect(count)
    assert len(sent_events) == 3
    assert sorted(
        m["headers"]["id"] for j in jobs for _, m in raw_messages_of(broker, str(j.id))
    ) == sorted(sent_events)


def released(count: int, *, queue: str = PROBE_QUEUE, priority: int = 5) -> list[ReleasedJob]:
    return [
        ReleasedJob(id=uuid4(), queue=queue, priority=priority, attempt=1, timeout=60)
        for _ in range(count)
    ]


def test_an_idle_release_goes_out_one_job_per_message():
    for count in (1, 2, 7):
        jobs = released(count)
        assert pack(jobs, most=16, spread=4) == [[job] for job in jobs]
    jobs = released(40)
    assert pack(jobs, most=1, spread=4) == [[job] for job in jobs]  # batches off


def test_a_backlog_goes_out_in_batches_that_grow_with_it_up_to_the_cap():
    jobs = released(40)
    batches = pack(jobs, most=16, spread=4)
    assert [len(b) for b in batches] == [10, 10, 10, 10]
    assert [job for batch in batches for job in batch] == jobs  # release order kept
    assert [len(b) for b in pack(released(500), most=16, spread=4)] == [16] * 31 + [4]
    assert [len(b) for b in pack(released(9), most=16, spread=4)] == [2, 2, 2, 2, 1]


def test_a_top_up_goes_out_in_messages_sized_by_what_the_broker_holds():
    """Jobs released onto a broker that holds others of their queue share messages as if they
    had been released with them: a top-up of a few jobs is one message, not a few of one job."""
    assert [len(b) for b in pack(released(12), most=16, spread=4, queued={PROBE_QUEUE: 52})] == [12]
    assert [len(b) for b in pack(released(40), most=16, spread=4, queued={PROBE_QUEUE: 24})] == [
        16,
        16,
        8,
    ]
    jobs = released(2)  # an idle queue elsewhere: one job per message, as before
    assert pack(jobs, most=16, spread=4, queued={"other": 500}) == [[job] for job in jobs]


def test_a_backlog_is_spread_over_at_least_as_many_messages_as_the_queue_has_pool_slots():
    """A threads pool of 32 runs one message per thread, each message's jobs one after the
    other: 64 jobs go out as 32 messages of 2, not as four of 16 that keep four threads busy."""
    sizes = [len(b) for b in pack(released(64), most=16, spread=4, slots={PROBE_QUEUE: 32})]
    assert sizes == [2] * 32
    # A top-up onto a broker that holds 48: messages sized by the 80 spread over 32 slots.
    top_up = pack(
        released(32), most=16, spread=4, queued={PROBE_QUEUE: 48}, slots={PROBE_QUEUE: 32}
    )
    assert [len(b) for b in top_up] == [2] * 16
    assert [len(b) for b in pack(released(20), most=16, spread=4, slots={PROBE_QUEUE: 32})] == [
        1
    ] * 20  # fewer jobs than slots: one each
    # Never beyond the cap, however many jobs each slot would get.
    assert [len(b) for b in pack(released(800), most=16, spread=4, slots={PROBE_QUEUE: 32})] == [
        16
    ] * 50


def test_pool_slots_fewer_than_the_spread_keep_full_messages():
    """Prefork -c 2 (issue #13's case): BATCH_SPREAD still sizes the messages, which stay full;
    slots of another queue, or none known, change nothing."""
    for slots in ({PROBE_QUEUE: 2}, {"other": 32}, {}, None):
        sizes = [len(b) for b in pack(released(64), most=16, spread=4, slots=slots)]
        assert sizes == [16] * 4


def test_a_batch_holds_jobs_of_one_queue_and_priority():
    urgent, other, normal = released(8, priority=9), released(8, queue="x"), released(7)
    mixed = [urgent[0], other[0], *normal, *urgent[1:], *other[1:]]
    batches = pack(mixed, most=16, spread=4)
    assert sorted(map(len, batches)) == [1] * 7 + [2] * 8  # 7 normal jobs: too few to share
    for batch in batches:
        assert len({(job.queue, job.priority) for job in batch}) == 1
    assert [job for b in batches for job in b if job.priority == 9] == urgent


def test_a_copied_batch_message_is_the_one_celery_builds_for_its_jobs(broker):
    """A batch's message names every job it starts (Flower shows them as the task's arguments)
    and carries their trace ids, and a copy of the queue's first batch message (whose jobs have
    none) is what send_task builds for its jobs."""
    first, second = (
        released(2),
        [
            ReleasedJob(
                id=uuid4(),
                queue=PROBE_QUEUE,
                priority=8,
                attempt=n,
                timeout=10 * n,
                trace_id="" if n == 2 else str(n) * 32,
            )
            for n in (1, 2, 3)
        ],
    )
    assert publish_attempts([*first, *second], batch_max=3, spread=1) == [*first, *second]
    with celery_app.producer_or_acquire() as producer:
        send_message(celery_app, second, producer)
    messages = [m for _, m, of in probe_messages(broker) if of == str(second[0].id)]
    assert len(messages) == 2
    for message in messages:
        headers, properties = message["headers"], message["properties"]
        task_id = headers.pop("id")
        assert headers.pop("root_id") == properties.pop("correlation_id") == task_id
        properties.pop("delivery_tag")
        assert headers["task"] == "executions.run_jobs"
        assert headers["timelimit"] == [10 + 20 + 30 + HARD_TIME_LIMIT_MARGIN, None]
        assert all(str(job.id) in headers["argsrepr"] for job in second)
        assert message_jobs(message) == [(str(job.id), job.attempt) for job in second]
        # Each job's trace id, in the order of its jobs, for the worker's log lines.
        assert headers["trace_ids"] == ["1" * 32, "", "3" * 32]
        assert "trace_id" not in headers
    copied, by_celery = messages
    assert copied == by_celery


@pytest.mark.django_db(transaction=True)
def test_each_job_of_a_batch_runs_once_however_often_its_message_is_delivered(
    user, broker, settings
):
    settings.JOBPLATFORM_DISPATCH_QUEUED_SECONDS = 0  # the broker depth: every due job at once
    count = 40
    JobFactory.create_batch(count, owner=user, queue=PROBE_QUEUE)
    assert Dispatcher(batch_size=count, queues=[PROBE_QUEUE]).dispatch_once() == count
    messages = {m["headers"]["id"]: m for _, m, _ in probe_messages(broker)}
    assert len(messages) == 4  # a release of 40: 4 messages of 10 (the settings' 16 and 4)
    for _ in range(2):  # every message delivered twice: the second claims nothing
        for task_id, message in messages.items():
            run_jobs.apply(args=[message_jobs(message)], task_id=task_id).get()
    assert Job.objects.filter(status=Job.Status.SUCCEEDED, attempts=1).count() == count
    deliveries = Execution.objects.values_list("delivery_id", flat=True)
    assert sorted(deliveries) == sorted(id for id in messages for _ in range(10))


@pytest.mark.django_db(transaction=True)
def test_a_backlog_of_short_jobs_reaches_the_broker_in_full_messages_as_workers_take_it(
    user, broker
):
    """The flowcost bench's regression: with the broker depth at a quarter second of work and
    each release's messages sized by that release alone, workers that took a few jobs between
    two passes got them back one or two per message, and ran at half their speed. Now the
    depth holds a full message for each of BATCH_SPREAD pool processes, the broker is topped up
    once half of it was taken, and a top-up's messages are sized by what the broker holds."""
    most, spread = settings.JOBPLATFORM_BATCH_MAX, settings.JOBPLATFORM_BATCH_SPREAD
    full = most * spread
    JobFactory.create_batch(3 * full, owner=user, queue=PROBE_QUEUE)
    dispatcher = Dispatcher(queues=[PROBE_QUEUE])
    # Short jobs: workers took 3 x full jobs in the last second, so full messages for every
    # pool process are less than half a second of their work.
    dispatcher.depth.released(PROBE_QUEUE, 3 * full)
    seen: set[str] = set()

    def new_messages() -> list[int]:
        """The number of jobs of each message published since the last call."""
        sizes = Counter(m["headers"]["id"] for _, m, _ in probe_messages(broker))
        fresh = sorted((n for id, n in sizes.items() if id not in seen), reverse=True)
        seen.update(sizes)
        return fresh

    def workers_take(n: int) -> None:
        queued = Job.objects.filter(queue=PROBE_QUEUE, status=Job.Status.QUEUED)
        taken = list(queued.order_by("created_at").values_list("id", flat=True)[:n])
        Job.objects.filter(id__in=taken).update(status=Job.Status.SUCCEEDED)

    assert dispatcher.dispatch_once() == full
    assert new_messages() == [most] * spread
    workers_take(10)
    assert dispatcher.dispatch_once() == 0  # a few taken: not worth a release yet
    workers_take(full // 2 - 10)
    assert dispatcher.dispatch_once() == full // 2
    assert new_messages() == [most] * (spread // 2)


def json_lines(logger_name: str, run) -> list[dict]:
    """The JSON lines the configured handler writes for ``logger_name`` while ``run`` runs."""
    config = logs.logging_config(fmt="json", level="INFO", role="worker")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    configure = logging.config.DictConfigurator(config).configure_custom
    handler.setFormatter(configure(dict(config["formatters"]["structured"])))
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logs.clear()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.django_db(transaction=True)
def test_each_job_of_a_batch_carries_its_own_trace_id(user, broker, settings):
    """A batch's message lists its jobs' trace ids, and each job's lines carry its own ids and
    trace id, none of the job before it."""
    settings.JOBPLATFORM_DISPATCH_QUEUED_SECONDS = 0  # the broker depth: every due job at once
    jobs = JobFactory.create_batch(40, owner=user, queue=PROBE_QUEUE)
    traced = {str(job.id): f"{n:032x}" for n, job in enumerate(jobs, 1) if n % 2}
    for job in jobs:
        Job.objects.filter(id=job.id).update(trace_id=traced.get(str(job.id), ""))
    assert Dispatcher(batch_size=40, queues=[PROBE_QUEUE]).dispatch_once() == 40
    message = probe_messages(broker)[0][1]
    ids = [job_id for job_id, _ in message_jobs(message)]
    assert len(ids) == 10
    assert message["headers"]["trace_ids"] == [traced.get(job_id, "") for job_id in ids]

    results = []
    lines = json_lines(
        "jobplatform.executions",
        lambda: results.append(
            run_jobs.apply(args=[message_jobs(message)], task_id=message["headers"]["id"]).get()
        ),
    )
    assert results == [{"succeeded": 10}]
    ended = [line for line in lines if line["message"].endswith(": succeeded")]
    assert [(line["job_id"], line.get("trace_id")) for line in ended] == [
        (job_id, traced.get(job_id)) for job_id in ids
    ]
