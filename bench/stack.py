"""A PostgreSQL, a Redis and the platform's processes of the benchmark's own (under .run/bench)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from celery import Celery

from bench.baseline import app as baseline_app

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run" / "bench"
PGPORT, REDIS_PORT, WEB_PORT = 55532, 56479, 18000
SERVICE_PIDFILES = {
    "postgres": RUN_DIR / "postgres" / "data" / "postmaster.pid",
    "redis": RUN_DIR / "redis" / "redis.pid",
}


NEW_API_KEY = """
from django.contrib.auth import get_user_model
from jobplatform.services import api_key_create
user = get_user_model().objects.get(username="bench")
print(api_key_create(user=user, name="bench", actor=None).key)
"""
NEW_JWT = """
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
print(AccessToken.for_user(get_user_model().objects.get(username="bench")))
"""


class Stack:
    def __init__(self) -> None:
        self.env = {
            **os.environ,
            "RUN_DIR": str(RUN_DIR),
            "PGPORT": str(PGPORT),
            "REDIS_PORT": str(REDIS_PORT),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PGPORT}/jobplatform",
            "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "BASELINE_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
            "DJANGO_SECRET_KEY": "benchmark-only-" + os.urandom(16).hex(),
            "DJANGO_DEBUG": "0",
            "DJANGO_LOG_LEVEL": "WARNING",
            "JOBPLATFORM_QUEUES": "default",
            # Throttles on, as in production, so their cost is measured, at rates no scenario
            # reaches (single submissions send ~20000 a minute from one user).
            "JOBPLATFORM_THROTTLE_USER_RATE": "10000000/min",
            "JOBPLATFORM_THROTTLE_API_KEY_RATE": "10000000/min",
            "JOBPLATFORM_JWT_ACCESS_MINUTES": "120",  # outlives a run
            "PYTHONUNBUFFERED": "1",
            # Metrics as in production: every process writes them to memory-mapped files.
            "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = RUN_DIR / "logs"

    # --- services ----------------------------------------------------------------------------

    def up(self, auth: str = "token") -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(RUN_DIR / "prometheus", ignore_errors=True)  # empty at start, as required
        subprocess.run([str(REPO / "scripts/services.sh"), "start"], env=self.env, check=True)
        self.manage("migrate", "--noinput", "-v0")
        out = self.manage("issue_token", "bench", "--role", "operator")
        token = re.search(r"API token: (\w+)", out)
        assert token is not None, out
        self.token = token.group(1)
        # The credential of the single submissions; the other scenarios use the token.
        self.authorization = f"Token {self.token}"
        if auth != "token":
            scheme, code = {"api-key": ("Api-Key", NEW_API_KEY), "jwt": ("Bearer", NEW_JWT)}[auth]
            printed = self.manage("shell", "--verbosity", "0", "-c", code)
            self.authorization = f"{scheme} {printed.strip().splitlines()[-1]}"
        # A second client, for the fairness scenario.
        out = self.manage("issue_token", "bench-b", "--role", "operator")
        token = re.search(r"API token: (\w+)", out)
        assert token is not None, out
        self.token_b = token.group(1)
        self.db = psycopg.connect(self.env["DATABASE_URL"], autocommit=True)
        self.redis = redis.Redis.from_url(self.env["REDIS_URL"])
        self.baseline_redis = redis.Redis.from_url(self.env["BASELINE_BROKER_URL"])
        # this process publishes. Item, not attribute: celery-types makes conf.broker_url a
        # read-only property; Settings.__setattr__ stores the same key.
        baseline_app.conf["broker_url"] = self.env["BASELINE_BROKER_URL"]
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{WEB_PORT}",
            headers={"Authorization": f"Token {self.token}"},
            timeout=60,
        )
        self.http_b = httpx.Client(
            base_url=f"http://127.0.0.1:{WEB_PORT}",
            headers={"Authorization": f"Token {self.token_b}"},
            timeout=60,
        )
        # Settings a scenario gives the processes it starts (flow control on or off).
        self.overrides: dict[str, str] = {}

    def down(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        subprocess.run([str(REPO / "scripts/services.sh"), "stop"], env=self.env, check=False)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def reset(self) -> None:
        """Empty the job tables and both broker databases, and write out the dirty pages.

        Without the CHECKPOINT, the pages a scenario dirtied are written out during the next one
        (PostgreSQL spreads a checkpoint over minutes), whose commits then wait behind that I/O:
        single submissions right after a throughput run gave 247 jobs/s, 286 with the CHECKPOINT,
        384 with no throughput run before them (one run each, docs/performance.md).
        """
        self.sql(
            "TRUNCATE jobs_job, executions_execution, executions_stepresult, jobs_queue,"
            " jobs_ownerquota CASCADE"
        )
        self.sql("CHECKPOINT")
        self.redis.flushdb()
        self.baseline_redis.flushdb()

    # --- processes ---------------------------------------------------------------------------

    def start(
        self,
        name: str,
        argv: list[str],
        ready: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, cwd=REPO, env=self.env | self.overrides | (env or {}), stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if ready:
            deadline = time.monotonic() + 60
            while ready not in (self.logs / f"{name}.log").read_text(errors="replace"):
                if time.monotonic() > deadline or self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} did not start: see {self.logs / name}.log")
                time.sleep(0.1)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def start_web(self) -> None:
        self.start(
            "web",
            [sys.executable, "-m", "gunicorn", "jobplatform.wsgi:application",
             "--bind", f"127.0.0.1:{WEB_PORT}", "--workers", "2", "--log-level", "warning"],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/api/v1/health/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer")
            time.sleep(0.1)

    def start_dispatcher(
        self,
        name: str = "dispatcher",
        *,
        log_level: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """A dispatcher; ``log_level`` INFO makes it log each schedule sweep (what, how long).
        Its PostgreSQL sessions carry ``name`` as their application_name (libpq's PGAPPNAME);
        ``env`` adds settings (JOBPLATFORM_BATCH_MAX, say)."""
        env = (
            {"PGAPPNAME": name}
            # Console lines, whatever the caller's shell says: bench.swept() reads them.
            | (
                {"DJANGO_LOG_LEVEL": log_level, "JOBPLATFORM_LOG_FORMAT": "console"}
                if log_level
                else {}
            )
            | (env or {})
        )
        ready = "dispatcher started" if log_level else None
        self.start(name, [sys.executable, "manage.py", "run_dispatcher"], ready, env)

    def backend_cpu(self, application: str) -> float:
        """CPU seconds so far of the PostgreSQL backends whose application_name starts with
        ``application`` (a process's own share of PostgreSQL's work)."""
        pids = self.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", [application + "%"]
        )
        total = 0.0
        for (pid,) in pids:
            with contextlib.suppress(OSError):  # a session that ended meanwhile
                total += own_cpu_seconds(pid)
        return total

    def start_worker(
        self,
        name: str = "worker",
        *,
        queues: str = "default",
        pool: str = "prefork",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        """A platform worker consuming ``queues`` (a comma list); its Celery node name is
        ``<name>@<host>``, so that several may run at once (the mixed scenario)."""
        self.start(
            name,
            [sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "--queues", queues, "--loglevel", "WARNING",
             "--hostname", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env,
        )  # fmt: skip
        self.await_celery_ready(name, pool, node=f"{name}@{socket.gethostname()}")

    def start_baseline_worker(self, *, pool: str = "prefork", concurrency: int = 2) -> None:
        self.start(
            "baseline-worker",
            [sys.executable, "-m", "celery", "-A", "bench.baseline", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "--queues", "baseline", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
        )  # fmt: skip
        self.await_celery_ready("baseline-worker", pool)

    def await_celery_ready(self, name: str, pool: str = "prefork", node: str | None = None) -> None:
        """Until the worker answers a broadcast ping: its consumer is connected and serving
        (and, on prefork, its two pool processes are up); ``node``: only that node's answer
        counts (another worker already running would answer too)."""
        broker = self.env["BASELINE_BROKER_URL" if name == "baseline-worker" else "REDIS_URL"]
        app = Celery(broker=broker, set_as_current=False)
        # The same key separator as the workers, or the reply binding cannot be parsed.
        app.conf.broker_transport_options = baseline_app.conf.broker_transport_options
        control = app.control
        deadline = time.monotonic() + 60
        children = 2 if pool == "prefork" else 0
        destination = [node] if node else None
        while not (
            len(self.pool_pids(name)) >= children
            and control.ping(destination=destination, timeout=0.5)
        ):
            if time.monotonic() > deadline or self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} did not start: see {self.logs / name}.log")

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running process of the stack and by its services."""
        return {name: tree_sum(pid, own_cpu_seconds) for name, pid in self.pids().items()}

    def runq_waits(self) -> dict[str, float]:
        """Seconds each process (with its threads and children) has waited so far for a core."""
        return {name: tree_sum(pid, own_runq_wait) for name, pid in self.pids().items()}

    def pids(self) -> dict[str, int]:
        pids = {name: process.pid for name, process in self.processes.items()}
        for service, pidfile in SERVICE_PIDFILES.items():
            # Not running, or not readable by this user: left out.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids[service] = int(pidfile.read_text().split()[0])
        return pids

    def pool_pids(self, name: str) -> list[int]:
        main = self.processes[name].pid
        children = Path(f"/proc/{main}/task/{main}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []


def tree_sum(pid: int, own: Callable[[int], float]) -> float:
    """``own`` of ``pid`` and of its live descendants (0 for a process that is gone)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = own(pid)
    except OSError:
        return 0.0
    return total + sum(tree_sum(int(child), own) for child in children)


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_runq_wait(pid: int) -> float:
    """Seconds the threads of ``pid`` were runnable but waiting for a core (schedstat, field 2).

    On two cores shared by the worker, PostgreSQL, Redis and the dispatcher this is where a
    hand-off between processes loses time that no process's CPU shows (docs/performance.md).
    """
    waited = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            waited += int((thread / "schedstat").read_text().split()[1])
    return waited / 1e9


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
