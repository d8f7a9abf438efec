"""The chaos harness: a platform of real processes that a test can break.

Each test gets its own Redis server (so it can be restarted empty), dispatchers and two Celery
workers serving the queue ``chaos`` on the test database, plus the session's HTTP target that the
``tick`` step reports to. Recovery times are collected and printed at the end of the run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from executions.models import Execution, StepResult
from jobs.models import Job, Schedule
from jobs.schedules.services import SCHEDULES_CHANNEL, ScheduleSpec, schedule_create
from jobs.services import JobSpec, job_submit
from tests.conftest import REPO, database_url
from tests.servers import RabbitMQ
from tests.support import HttpTarget, free_port, wait_for

QUEUE = "chaos"
RECOVERY: list[tuple[str, float]] = []


@dataclass
class Chaos:
    """Processes of one chaos test; every one is stopped when the test ends."""

    logs: Path
    http: HttpTarget
    redis_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The broker: this test's own Redis, unless another is given (the session's RabbitMQ).
    broker_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "TEST_BROKER_URL": self.broker_url or f"redis://127.0.0.1:{self.redis_port}/0",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            # A session of its own, so a kill takes the process and its pool children together.
            process = subprocess.Popen(
                argv, cwd=REPO, env=self.env | (env or {}), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def start_redis(self) -> None:
        self.start(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
             "--save", "", "--appendonly", "no", "--dir", str(self.logs)],
        )  # fmt: skip
        wait_for(lambda: _answers(self.redis_port), timeout=10, what="redis to answer")

    def start_worker(self, name: str) -> None:
        self.start(
            name,
            [sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "--loglevel", "INFO",
             "--pool", "prefork", "--concurrency", "2", "--queues", QUEUE,
             "--hostname", f"{name}-{self.run[:8]}@127.0.0.1", "--without-gossip",
             "--without-mingle"],
        )  # fmt: skip
        wait_for(
            lambda: "ready." in (self.logs / f"{name}.log").read_text(errors="replace"),
            timeout=60,
            what=f"{name} to be ready",
        )

    def start_dispatcher(self, name: str = "dispatcher", env: dict[str, str] | None = None) -> None:
        self.start(
            name,
            [sys.executable, "manage.py", "run_dispatcher", "--queues", QUEUE, "--poll", "1"],
            env,
        )

    def start_beat(self, name: str) -> None:
        self.start(
            name,
            [sys.executable, "-m", "celery", "-A", "jobplatform", "beat", "--loglevel", "INFO",
             "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
             "--pidfile", "", "--schedule", str(self.logs / f"{name}.db")],
        )  # fmt: skip

    def signal(self, name: str, signum: int) -> None:
        os.killpg(self.processes[name].pid, signum)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    # --- the workload -----------------------------------------------------------------------

    @property
    def tick_path(self) -> str:
        return f"/tick/{self.run}"

    def submit(self, owner: Any, count: int, *, seconds: float = 0.1, delay: float = 0) -> list:
        """``count`` jobs of two ``tick`` steps, due after ``delay`` seconds."""
        url = self.http.url + self.tick_path
        steps = [{"type": "tick", "params": {"url": url, "seconds": seconds}}] * 2
        run_at = timezone.now() + timedelta(seconds=delay)
        spec = JobSpec(
            name="chaos", steps=steps, queue=QUEUE, max_retries=10, retry_backoff=0.2,
            retry_backoff_max=1, run_at=run_at,
        )  # fmt: skip
        return [job_submit(owner=owner, spec=spec).job.id for _ in range(count)]

    def schedule(self, owner: Any, count: int) -> list[Any]:
        """``count`` schedules of jobs of two ``tick`` steps, every minute, each missed tick run
        (so that a forged ``next_fire_at`` makes several due at once); their ids."""
        steps = [
            {"type": "tick", "params": {"url": self.http.url + self.tick_path, "seconds": 0.05}}
        ]
        job = JobSpec(
            name="chaos-tick", steps=steps * 2, queue=QUEUE, max_retries=10, retry_backoff=0.2,
            retry_backoff_max=1,
        )  # fmt: skip
        spec = ScheduleSpec(name="", cron="* * * * *", job=job, misfire="run_all")
        return [
            schedule_create(owner=owner, spec=replace(spec, name=f"chaos-{self.run[:8]}-{n}")).id
            for n in range(count)
        ]

    def make_due(self, schedule_ids: list[Any], *, ticks: int) -> list[datetime]:
        """Forge the schedules' next tick so that the last ``ticks`` whole minutes are due now,
        and wake the dispatchers; return those ticks. They end after the last of them: a test
        that crosses a minute's boundary must not see the next real tick fire too."""
        minute = timezone.now().replace(second=0, microsecond=0)
        due = [minute - timedelta(minutes=n) for n in reversed(range(ticks))]
        Schedule.objects.filter(id__in=schedule_ids).update(
            next_fire_at=due[0], end_at=due[-1] + timedelta(seconds=1)
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [SCHEDULES_CHANNEL])
        return due

    def submit_flaky(self, owner: Any, count: int, *, backoff: float) -> list:
        """``count`` jobs of a ``tick`` and an ``http`` step that fails once: each then waits
        ``backoff`` seconds for its retry, which the dispatcher releases once it is due."""
        tick = {"type": "tick", "params": {"url": self.http.url + self.tick_path, "seconds": 0}}
        ids = []
        for index in range(count):
            flaky = {
                "type": "http",
                "params": {"url": f"{self.http.url}/flaky/1/{self.run}-{index}"},
            }
            spec = JobSpec(
                name="chaos-retry", steps=[tick, flaky], queue=QUEUE, max_retries=3,
                retry_backoff=backoff, retry_jitter=False,
            )  # fmt: skip
            ids.append(job_submit(owner=owner, spec=spec).job.id)
        return ids

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def ticks(self) -> list[dict[str, Any]]:
        return list(self.http.bodies.get(self.tick_path, []))

    def await_all_finished(self, job_ids: list, *, fault: str, since: float, timeout: float = 120):
        wait_for(
            lambda: (
                not Job.objects.filter(id__in=job_ids)
                .exclude(status__in=["succeeded", "failed", "cancelled"])
                .exists()
            ),
            timeout=timeout,
            what=f"every job to finish after {fault}",
        )
        RECOVERY.append((fault, time.monotonic() - since))

    def batches(self, worker: str) -> dict[str, list[uuid.UUID]]:
        """The run_jobs messages ``worker`` started and did not finish: task id -> job ids."""
        log = (self.logs / f"{worker}.log").read_text(errors="replace")
        started = {
            task: [uuid.UUID(job.split(":")[0]) for job in jobs.split()]
            # A JSON line or a text one: the list ends where the "id:attempt"s do.
            for task, jobs in re.findall(r"batch ([\w-]+): \d+ jobs: ([0-9a-f:\- ]*)", log)
        }
        return {task: jobs for task, jobs in started.items() if f"[{task}] succeeded" not in log}

    def assert_invariants(self, job_ids: list) -> None:
        assert_invariants(job_ids, self.ticks())


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def assert_invariants(job_ids: list, ticks: list[dict[str, Any]]) -> None:
    """No job lost, none run twice at once, every side effect accounted for by an attempt."""
    jobs = {job.id: job for job in Job.objects.filter(id__in=job_ids)}
    assert len(jobs) == len(job_ids)
    not_succeeded = {str(j.id): j.status for j in jobs.values() if j.status != "succeeded"}
    assert not_succeeded == {}, f"jobs that did not succeed: {not_succeeded}"

    executions: dict[Any, list[Execution]] = {}
    for execution in Execution.objects.filter(job_id__in=job_ids).order_by("attempt"):
        executions.setdefault(execution.job_id, []).append(execution)
    for job_id, attempts in executions.items():
        for earlier, later in itertools.pairwise(attempts):
            # At most one attempt running at any time: each starts after the previous ended.
            assert earlier.finished_at is not None, f"{job_id} attempt {earlier.attempt} open"
            assert later.started_at >= earlier.finished_at, f"{job_id}: attempts overlap"
        assert attempts[-1].status == "succeeded"

    done = {}  # (job, step) -> the attempt that completed it
    for job_id, step, attempt in StepResult.objects.filter(
        execution__job_id__in=job_ids, status="succeeded"
    ).values_list("execution__job_id", "index", "execution__attempt"):
        assert (job_id, step) not in done, f"{job_id} step {step} completed twice"
        done[(job_id, step)] = attempt
    assert len(done) == 2 * len(job_ids)

    seen = set()
    known = {(e.job_id, e.attempt) for attempts in executions.values() for e in attempts}
    for tick in ticks:
        job_id, step, attempt = uuid.UUID(tick["job"]), tick["step"], tick["attempt"]
        if job_id not in jobs:
            continue
        key = (job_id, step, attempt)
        assert key not in seen, f"{key} ran twice within one attempt"
        seen.add(key)
        assert (job_id, attempt) in known, f"{key}: a side effect from no recorded attempt"
        # A completed step is never run again by a later attempt.
        assert attempt <= done[(job_id, step)], f"{key} re-ran a completed step"


@pytest.fixture
def chaos(http_target: HttpTarget, tmp_path: Path) -> Iterator[Chaos]:
    cluster = Chaos(logs=tmp_path, http=http_target)
    cluster.start_redis()
    try:
        yield cluster
    finally:
        cluster.stop_all()
        connections.close_all()


@pytest.fixture
def chaos_rabbitmq(http_target: HttpTarget, tmp_path: Path, rabbitmq: RabbitMQ) -> Iterator[Chaos]:
    """The harness over the session's RabbitMQ, with the production JOBPLATFORM_REDELIVER_AFTER
    (300 s): within the test's time, a message the broker lost would never come back."""
    cluster = Chaos(
        logs=tmp_path,
        http=http_target,
        broker_url=rabbitmq.url,
        extra_env={"TEST_REDELIVER_AFTER": "300"},
    )
    try:
        yield cluster
    finally:
        cluster.stop_all()
        connections.close_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RECOVERY:
        terminalreporter.section("chaos: time from fault to every job finished")
        for fault, seconds in RECOVERY:
            terminalreporter.write_line(f"{fault:<45} {seconds:6.1f} s")
        report = Path(os.environ.get("RUN_DIR", REPO / ".run")) / "chaos-recovery.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(dict(RECOVERY), indent=2))
