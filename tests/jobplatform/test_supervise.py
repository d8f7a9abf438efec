"""`make run` stays up when one process dies: the Procfile under supervisord, for real.

Web, dispatcher, worker, beat and Flower are started as `make run` starts them
(``python -m jobplatform.supervise Procfile``) on free ports against the test database; the
worker's main process is killed with SIGKILL (as the OOM killer would) and comes back while the
web server keeps answering; then SIGINT (Ctrl-C) stops everything, leaving no process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from jobplatform.celery import app as celery_app
from jobplatform.supervise import config, read_procfile
from tests.conftest import REPO, database_url
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def children(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent.
    return "Z" not in (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]


def test_the_procfile_becomes_one_program_each_restarted_and_stopped_as_a_group(tmp_path):
    processes = read_procfile(REPO / "Procfile")
    assert [name for name, _ in processes] == ["web", "dispatcher", "worker", "beat", "flower"]
    text = config(processes, tmp_path, grace=7)
    for name, _ in processes:
        assert f"[program:{name}]" in text
    assert text.count("autorestart = true") == 6  # five programs and the console listener
    assert text.count("stopasgroup = true") == text.count("killasgroup = true") == 5
    assert "stopwaitsecs = 7" in text
    assert "worker@%%h" in text  # supervisord's own %(...)s expansion would eat a bare %


def test_a_killed_worker_comes_back_and_ctrl_c_stops_everything(tmp_path):
    web_port, flower_port = free_port(), free_port()
    worker = f"supervised-{os.getpid()}@127.0.0.1"
    env = {
        **os.environ,
        # As `make run` does: the virtualenv's gunicorn, celery and python first.
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "RUN_DIR": str(tmp_path),
        "WEB_PORT": str(web_port),
        "FLOWER_PORT": str(flower_port),
        "WORKER_NAME": worker,
        "JOBPLATFORM_QUEUES": f"supervised-{os.getpid()}",  # takes no other test's jobs
        "JOBPLATFORM_FLOWER_AUTH": "demo:secret",
        "JOBPLATFORM_STOP_GRACE": "10",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "jobplatform.supervise", "Procfile"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    # Liveness: the web process answers. (Readiness would also time a gunicorn process's first
    # reading of the migration graph, seconds on a loaded machine, against _answers' timeout.)
    health = f"http://127.0.0.1:{web_port}/healthz"
    try:
        wait_for(lambda: celery_app.control.ping([worker], timeout=0.5), timeout=90,
                 what="the supervised worker to answer a ping")  # fmt: skip
        wait_for(lambda: _answers(health), timeout=60, what="the supervised web server")
        wait_for(lambda: _answers(f"http://127.0.0.1:{flower_port}/healthcheck"), timeout=60,
                 what="the supervised Flower")  # fmt: skip
        [old] = [p for p in children(supervisor.pid) if " worker " in cmdline(p)
                 and "celery" in cmdline(p) and _parent(p) == supervisor.pid]  # fmt: skip

        pool = children(old)  # its prefork children: they must not outlive it for long
        os.kill(old, signal.SIGKILL)
        served, started = 0, time.monotonic()
        while not celery_app.control.ping([worker], timeout=0.5):
            assert _answers(health), "the web server stopped answering while the worker was down"
            served += 1
            assert time.monotonic() - started < 60, log.read_text()
        assert served > 0  # the web server was asked, and answered, during the outage
        [new] = [p for p in children(supervisor.pid) if " worker " in cmdline(p)
                 and "celery" in cmdline(p) and _parent(p) == supervisor.pid]  # fmt: skip
        assert new != old
        output = log.read_text()
        assert "exited: worker (terminated by SIGKILL; not expected)" in output
        assert "web        | " in output  # each line prefixed by its process
        assert _answers(health)

        everything = children(supervisor.pid)
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=90)
        assert not [p for p in everything if alive(p)], log.read_text()
        wait_for(lambda: not any(alive(p) for p in pool), timeout=30,
                 what="the killed worker's pool processes to exit")  # fmt: skip
    finally:
        if supervisor.poll() is None:  # the test failed midway: stop what it started, all of it
            started = children(supervisor.pid)
            supervisor.send_signal(signal.SIGTERM)  # supervisord stops its programs, then exits
            try:
                supervisor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
            for pid in started:
                with contextlib.suppress(ProcessLookupError):  # stopped with supervisord
                    os.kill(pid, signal.SIGKILL)


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False
