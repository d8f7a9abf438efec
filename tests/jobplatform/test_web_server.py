"""The web process as deployed: gunicorn with gunicorn.conf.py, a real HTTP connection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from http.client import HTTPConnection

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Job
from tests.conftest import REPO, _stop, database_url
from tests.support import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.django_db(transaction=True)
def test_gunicorn_keeps_a_clients_connection_alive_across_submissions(user, tmp_path):
    token = Token.objects.create(user=user).key
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "jobplatform.wsgi:application",
             "--bind", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: server.poll() is not None or answers(port), what="gunicorn to listen")
        assert server.poll() is None, log.read_text()
        http = HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"name": "kept", "steps": [{"type": "log", "params": {"message": "x"}}]})
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        sockets, ids = [], []
        for _ in range(3):
            http.request("POST", "/api/v1/jobs/", body, headers)
            response = http.getresponse()
            assert response.status == 201, response.read()
            assert response.getheader("Connection", "").lower() != "close"
            ids.append(json.loads(response.read())["id"])
            sockets.append(http.sock)
        http.close()
    finally:
        _stop(server)
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # one TCP connection
    assert sorted(str(i) for i in Job.objects.values_list("id", flat=True)) == sorted(ids)
