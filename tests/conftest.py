from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as global_apps
from django.conf import settings
from django.db.models.signals import post_migrate
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobplatform.roles import Role
from tests.factories import UserFactory, with_role
from tests.servers import RabbitMQ
from tests.support import HttpTarget, free_port, port_answers, wait_for

REPO = Path(__file__).resolve().parent.parent


def _restore_roles(sender: Any, **kwargs: Any) -> None:
    """A transactional test's flush empties auth_group; post_migrate follows the flush and
    brings back the permissions, and this the role groups, as the migrations made them."""
    if sender.label == "jobplatform":
        migration = importlib.import_module("jobplatform.migrations.0002_roles")
        migration.create_roles(global_apps, None)
    if sender.label == "jobs":  # after jobplatform's (INSTALLED_APPS order)
        for later in ("0008_flow_control", "0010_rate_limits_breakers"):
            importlib.import_module(f"jobs.migrations.{later}").grant(global_apps, None)


post_migrate.connect(_restore_roles, dispatch_uid="tests.restore_roles")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What checking the responses against the OpenAPI document cost (tests/openapi.py)."""
    from tests.openapi import STATS

    if STATS.responses:
        terminalreporter.write_line(
            f"openapi: {STATS.responses} responses checked in {STATS.seconds:.2f}s "
            f"({1000 * STATS.seconds / STATS.responses:.2f} ms each), the document built in "
            f"{STATS.load_seconds:.2f}s; {STATS.unmatched} under /api/v1/ matched no route"
        )


@pytest.fixture
def user(db: Any) -> Any:
    """An operator: submits and acts on their own jobs, as every API client did before roles."""
    return with_role(UserFactory(), Role.OPERATOR)


@pytest.fixture
def viewer(db: Any) -> Any:
    return with_role(UserFactory(), Role.VIEWER)


@pytest.fixture
def admin(db: Any) -> Any:
    """The admin role (every owner's work, users, teams, keys), and may log in to the admin."""
    return with_role(UserFactory(is_staff=True), Role.ADMIN)


@pytest.fixture
def staff(admin: Any) -> Any:
    """What ``staff`` meant before roles (sees everything): the admin role. Prefer ``admin``."""
    return admin


def client_for(user: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user: Any) -> APIClient:
    """An API client authenticated with ``user``'s token."""
    return client_for(user)


@pytest.fixture(scope="session")
def http_target() -> Iterator[HttpTarget]:
    target = HttpTarget()
    yield target
    target.close()


@dataclass
class Platform:
    """A real Celery worker (prefork, 2 processes) and a real dispatcher, as subprocesses.

    The session's (``platform``) log JSON lines and write their metrics into one multiprocess
    directory (``make run``'s layout); the ``web`` fixture adds a gunicorn that shares both.
    """

    worker_log: Path
    dispatcher_log: Path
    hostname: str  # the worker's Celery node name
    env: dict[str, str]  # the environment the processes run with

    def worker_output(self) -> str:
        return self.worker_log.read_text(errors="replace")

    def await_worker_log(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.worker_output(), timeout=timeout, what=f"worker log {text!r}")


def database_url() -> str:
    db = settings.DATABASES["default"]  # after django_db_setup: the test database
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def processes_env(django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every process the tests start once per session (worker, dispatcher,
    gunicorn): the test database, JSON log lines and one metrics directory, as make run has."""
    metrics = tmp_path_factory.mktemp("metrics")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        "JOBPLATFORM_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@contextmanager
def running_platform(
    logs: Path,
    *,
    queues: str,
    env: dict[str, str] | None = None,
    concurrency: int = 2,
    name: str = "test-worker",
    pool: str = "prefork",
    webhooks: bool = True,
) -> Iterator[Platform]:
    """A real Celery worker (``pool``: prefork, or threads for the I/O pool) serving ``queues``
    (a comma list) and, with ``webhooks``, JOBPLATFORM_WEBHOOK_QUEUE (the callbacks' and the
    dead-letter webhooks', as the Procfile's worker does), and a real dispatcher releasing the
    jobs of ``queues``, as subprocesses, with ``env`` (the broker, the pooler, settings...) on
    top of the test settings; ready when entered, stopped on exit. Logs: ``logs/worker.log``,
    ``logs/dispatcher.log``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    hostname = f"{name}-{os.getpid()}@127.0.0.1"
    plat = Platform(
        worker_log=logs / "worker.log",
        dispatcher_log=logs / "dispatcher.log",
        hostname=hostname,
        env=env,
    )
    with plat.worker_log.open("wb") as wlog, plat.dispatcher_log.open("wb") as dlog:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "--loglevel", "INFO",
             "--pool", pool, "--concurrency", str(concurrency),
             "--queues", queues + (f",{settings.JOBPLATFORM_WEBHOOK_QUEUE}" if webhooks else ""),
             "--hostname", hostname, "--without-gossip", "--without-mingle"],
            cwd=REPO, env=env, stdout=wlog, stderr=subprocess.STDOUT,
        )  # fmt: skip
        dispatcher = subprocess.Popen(
            [sys.executable, "manage.py", "run_dispatcher", "--poll", "1", "--queues", queues,
             # Schedules are fired by the tests that mean to: committed schedules with forged
             # times must not fire behind their backs.
             "--without-schedules"],
            cwd=REPO, env=env, stdout=dlog, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(
            lambda: worker.poll() is not None or f"{hostname} ready." in plat.worker_output(),
            timeout=60,
            what=f"{name} to be ready",
        )
        assert worker.poll() is None, plat.worker_output()
        wait_for(
            lambda: "dispatcher started" in plat.dispatcher_log.read_text(),
            timeout=30,
            what="the dispatcher to start",
        )
        yield plat
    finally:
        _stop(dispatcher)
        _stop(worker)


@dataclass
class Web:
    """gunicorn serving the test database, as deployed."""

    url: str
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def platform(
    processes_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The session's worker and dispatcher on the queue ``default``, over Redis, logging JSON
    lines and counting in the session's metrics directory (``processes_env``)."""
    with running_platform(
        tmp_path_factory.mktemp("platform"), queues="default", env=processes_env
    ) as plat:
        yield plat


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """A RabbitMQ node of the session's own (tests/servers.py), for the tests marked rabbitmq."""
    node = RabbitMQ(base=tmp_path_factory.mktemp("rabbitmq"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@contextmanager
def running_web(log: Path, *, env: dict[str, str]) -> Iterator[str]:
    """gunicorn as deployed (gunicorn.conf.py: gthread, by default one process of four threads)
    on a free port of 127.0.0.1, with ``env`` on top of the test settings; its root URL."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "4",
        **env,
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "jobplatform.wsgi:application",
             "--bind", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: server.poll() is not None or port_answers(port), what="gunicorn")
        assert server.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(server)


@pytest.fixture(scope="session")
def web(processes_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The web process as deployed, two processes of two threads, logging and counting with the
    platform's processes. Tests that use it need ``django_db(transaction=True)``: the server
    sees only committed data."""
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = processes_env | {"WEB_CONCURRENCY": "2", "WEB_THREADS": "2"}
    with running_web(log, env=env) as url:
        yield Web(url=url, port=int(url.rsplit(":", 1)[1]), log=log)


@pytest.fixture(scope="session")
def live_api(web: Web) -> str:
    """The root URL of ``web``."""
    return web.url
