"""Flower, started as the Procfile starts it, answers 401 without credentials and 200 with them."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from django.conf import settings

from jobplatform.probe import probe
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Flower as the Procfile runs it (on the tests' broker)."""
    broker = settings.CELERY_BROKER_URL
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "jobplatform", "--broker", broker, "flower",
             "--conf=flowerconfig.py", "--address=127.0.0.1", f"--port={port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "FLOWER" not in k}
    return env | extra


def test_flower_requires_the_credentials_from_the_secret_file(tmp_path):
    secret = tmp_path / "flower_auth"
    secret.write_text("ops:correct-horse\n")
    port, log = free_port(), tmp_path / "flower.log"
    process = flower(environment(JOBPLATFORM_FLOWER_AUTH_FILE=str(secret)), port, log)
    url = f"http://127.0.0.1:{port}/"

    def answers() -> httpx.Response | None:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            return None

    try:
        response = wait_for(answers, timeout=60, what="Flower to listen")
        assert response.status_code == 401
        assert httpx.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(url, auth=("ops", "correct-horse"), timeout=5).status_code == 200
        token = base64.b64encode(b"ops:correct-horse").decode()
        api = httpx.get(
            f"{url}api/workers", headers={"Authorization": f"Basic {token}"}, timeout=10
        )
        assert api.status_code == 200
        assert httpx.get(f"{url}api/workers", timeout=5).status_code == 401
        # The health check of docker-compose.yml needs no login, as the container has none.
        assert probe(f"{url}healthcheck") == (True, f"200 {url}healthcheck")
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_flower_refuses_to_start_without_credentials(tmp_path):
    log = tmp_path / "flower.log"
    process = flower(environment(), free_port(), log)
    assert process.wait(timeout=60) != 0
    assert "Flower needs credentials" in log.read_text()
