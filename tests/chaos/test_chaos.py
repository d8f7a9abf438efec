"""Faults injected into a running platform of real processes (DESIGN §2-§3, issue #5).

Every test submits jobs of two ``tick`` steps (each reports (job, step, attempt) to a local HTTP
server, then sleeps), breaks something while they run, and then checks the invariants in
``conftest.assert_invariants``: every job succeeded, attempts never overlapped, every step was
completed once, and every side effect came from a recorded attempt.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from executions.models import Execution
from jobplatform.celery import app as celery_app
from jobs.models import Job
from tests.chaos.conftest import QUEUE, RECOVERY, REPO
from tests.conftest import client_for
from tests.support import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

JOBS = 120
SCHEDULES = 40


def started(chaos, count: int) -> None:
    wait_for(lambda: len(chaos.ticks()) >= count, timeout=60, what=f"{count} steps to start")


def test_kill_9_of_a_worker_mid_step(chaos, user):
    chaos.start_dispatcher()
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, JOBS, seconds=0.3)
    started(chaos, 30)
    chaos.signal("worker-a", signal.SIGKILL)  # the worker and its pool processes, at once
    fault_at = time.monotonic()
    chaos.await_all_finished(jobs, fault="kill -9 of a worker mid-step", since=fault_at)
    chaos.assert_invariants(jobs)
    lost = Job.objects.filter(id__in=jobs, executions__status="lost").distinct().count()
    assert lost >= 1  # the kill did interrupt attempts, and they were recovered


def test_kill_9_of_a_worker_mid_batch(chaos, user):
    """Jobs due at once go out 16 per message; a worker killed while running two such messages
    loses the jobs it was running (reaped, retried), and the jobs of its messages it had not yet
    claimed start elsewhere as their first attempt."""
    # No broker depth bound: the 64 jobs due at once are released at once, 4 messages of 16.
    chaos.start_dispatcher(env={"JOBPLATFORM_DISPATCH_MAX_QUEUED": "0"})
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, 64, seconds=0.1, delay=3)  # all submitted before any is due
    batches = wait_for(
        lambda: len(found := chaos.batches("worker-a")) == 2 and found,
        what="worker-a to start two batches",
    )
    started(chaos, 12)
    chaos.signal("worker-a", signal.SIGKILL)
    fault_at = time.monotonic()
    chaos.await_all_finished(jobs, fault="kill -9 of a worker mid-batch", since=fault_at)
    chaos.assert_invariants(jobs)
    in_batches = {job_id for batch in batches.values() for job_id in batch}
    assert all(len(batch) > 1 for batch in batches.values())  # 16 each, unless the machine
    # was so slow that the release came before every job was submitted
    executions = Execution.objects.filter(job_id__in=in_batches)
    lost = {e.job_id for e in executions if e.status == "lost"}
    on_a = {e.job_id for e in executions if e.worker.startswith("worker-a")}
    unclaimed = in_batches - on_a
    assert 1 <= len(lost) <= 2  # the job each pool process of worker-a was running
    assert unclaimed  # the kill came mid-batch
    for job in Job.objects.filter(id__in=unclaimed).prefetch_related("executions"):
        # Started elsewhere, as the attempt it was released for: no attempt spent.
        assert job.attempts == 1
        assert [e.worker.startswith("worker-b-") for e in job.executions.all()] == [True]


def test_redis_restarted_empty_while_jobs_queue_and_run(chaos, user):
    # Production's JOBPLATFORM_REDELIVER_AFTER (300 s): the dispatcher's broker watch, not that
    # delay, must bring the lost messages back (issue #20: within 10 s).
    chaos.extra_env["TEST_REDELIVER_AFTER"] = "300"
    chaos.start_dispatcher()
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    # Their retries wait 5 s in PostgreSQL when Redis dies (no message of theirs is on it): the
    # release publishes them to the new Redis when due.
    retrying = chaos.submit_flaky(user, 8, backoff=5)
    jobs = chaos.submit(user, JOBS, seconds=0.2)
    wait_for(
        lambda: Job.objects.filter(id__in=retrying, status="retrying").count() == len(retrying),
        what="the retries to wait for their backoff",
    )
    started(chaos, 30)
    chaos.signal("redis", signal.SIGKILL)
    chaos.processes["redis"].wait()
    chaos.start_redis()  # empty: every queued message is gone
    fault_at, back_at = time.monotonic(), timezone.now()
    lost = Job.objects.filter(id__in=jobs, status="queued").count()  # their messages are gone
    wait_for(
        lambda: "published again" in chaos.log("dispatcher"),
        what="the dispatcher to publish the lost jobs again",
    )
    RECOVERY.append(("Redis restarted empty: lost jobs published", time.monotonic() - fault_at))
    wait_for(
        lambda: Execution.objects.filter(job_id__in=jobs, started_at__gt=back_at).exists(),
        what="a job to start again",
    )
    RECOVERY.append(("Redis restarted empty: first job started", time.monotonic() - fault_at))
    chaos.await_all_finished(jobs + retrying, fault="Redis restarted empty", since=fault_at)
    chaos.assert_invariants(jobs + retrying)
    assert lost > 0
    assert "whose message was lost" not in chaos.log("dispatcher")  # not REDELIVER_AFTER's path


@pytest.mark.rabbitmq
def test_rabbitmq_killed_and_restarted_loses_no_message(chaos_rabbitmq, rabbitmq, user):
    """The durable broker: quorum queues keep the queued messages, and the unacknowledged
    ones, across a crash. The dispatcher republishes nothing (it would only after 300 s here):
    every job finishes from the messages RabbitMQ kept."""
    chaos = chaos_rabbitmq
    chaos.start_dispatcher()
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, JOBS, seconds=0.2)
    started(chaos, 30)
    rabbitmq.kill()
    fault_at = time.monotonic()
    rabbitmq.start()
    chaos.await_all_finished(jobs, fault="RabbitMQ killed and restarted", since=fault_at)
    chaos.assert_invariants(jobs)
    dispatcher_log = (chaos.logs / "dispatcher.log").read_text(errors="replace")
    assert "whose message was lost" not in dispatcher_log


def test_postgresql_restarted_while_workers_run(chaos, user):
    chaos.start_dispatcher()
    chaos.start_beat("beat")
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, JOBS, seconds=0.2)
    started(chaos, 30)
    answers: list[tuple[int, str | None]] = []
    polling = threading.Event()
    poller = threading.Thread(target=poll_api, args=(client_for(user), polling, answers))
    connections.close_all()  # this thread's session would not survive the restart
    poller.start()
    fault_at = time.monotonic()
    try:
        restart = subprocess.run(
            [str(REPO / "scripts/services.sh"), "restart-postgres"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        polling.set()
        poller.join()
    assert restart.returncode == 0, restart.stderr
    chaos.await_all_finished(jobs, fault="PostgreSQL restarted", since=fault_at)
    chaos.assert_invariants(jobs)
    # While it was down the API answered 503 with a code, never a 500 or a traceback.
    assert {status for status, _ in answers} <= {200, 503}, answers
    assert {code for status, code in answers if status == 503} == {"API.DATABASE_UNAVAILABLE"}
    assert chaos.processes["beat"].poll() is None  # beat carried on


def poll_api(client, stop: threading.Event, answers: list) -> None:
    """Ask the API for jobs every 10 ms until ``stop``; keep (status, error code) of each answer."""
    try:
        while not stop.wait(0.01):
            response = client.get("/api/v1/jobs/?page_size=1")
            code = response.json()["error"]["code"] if response.status_code != 200 else None
            answers.append((response.status_code, code))
    finally:
        connections.close_all()


def test_the_same_message_published_twice_for_a_batch(chaos, user):
    # The whole batch in the broker at once (no broker depth), as the duplicates will be.
    chaos.start_dispatcher(env={"JOBPLATFORM_DISPATCH_MAX_QUEUED": "0"})
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, JOBS, seconds=0.05, delay=1)
    wait_for(
        lambda: not Job.objects.filter(id__in=jobs, status="pending").exists(),
        what="the batch to be released",
    )
    fault_at = time.monotonic()
    broker = chaos.env["TEST_BROKER_URL"]
    with celery_app.connection_for_write(broker) as conn, conn.Producer() as producer:
        for job_id in jobs:
            celery_app.send_task(
                "executions.run_job", args=[str(job_id), 1], queue=QUEUE, producer=producer
            )
    chaos.await_all_finished(jobs, fault="every message published twice", since=fault_at)
    chaos.assert_invariants(jobs)
    assert len(chaos.ticks()) == 2 * JOBS  # each step of each job ran exactly once


def test_two_dispatchers_and_two_beats_at_once(chaos, user):
    schedules = chaos.schedule(user, SCHEDULES)
    for name in ("dispatcher-1", "dispatcher-2"):
        chaos.start_dispatcher(name)
    chaos.start_beat("beat-1")
    chaos.start_beat("beat-2")
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    fault_at = time.monotonic()
    jobs = chaos.submit(user, JOBS, seconds=0.05)
    # Both dispatchers sweep the same due schedules at once: two ticks each are due.
    ticks = chaos.make_due(schedules, ticks=2)
    scheduled = wait_for(
        lambda: (
            (made := Job.objects.filter(schedule__in=schedules)).count() >= 2 * SCHEDULES
            and list(made.values_list("id", "schedule_id", "scheduled_for"))
        ),
        what="every due tick to fire",
    )
    jobs += [job_id for job_id, _, _ in scheduled]
    chaos.await_all_finished(jobs, fault="two dispatchers and two beats", since=fault_at)
    chaos.assert_invariants(jobs)
    assert len(chaos.ticks()) == 2 * len(jobs)  # nothing was released, fired or run twice
    assert sorted((s, t) for _, s, t in scheduled) == sorted(
        (s, t) for s in schedules for t in ticks
    )
    assert all(p.poll() is None for n, p in chaos.processes.items() if n.startswith("beat"))


def test_sigterm_to_a_worker_during_jobs(chaos, user):
    chaos.start_dispatcher()
    chaos.start_worker("worker-a")
    chaos.start_worker("worker-b")
    jobs = chaos.submit(user, JOBS, seconds=0.3)
    started(chaos, 30)
    chaos.processes["worker-a"].send_signal(signal.SIGTERM)  # warm shutdown of the main process
    fault_at = time.monotonic()
    assert chaos.processes["worker-a"].wait(timeout=60) == 0
    # It finished what it had started: nothing of it is left running or lost.
    assert not Job.objects.filter(
        id__in=jobs, executions__worker__startswith="worker-a", executions__status="running"
    ).exists()
    assert not Job.objects.filter(id__in=jobs, executions__status="lost").exists()
    chaos.await_all_finished(jobs, fault="SIGTERM to a worker", since=fault_at)
    chaos.assert_invariants(jobs)
