"""jobplatform.probe, the health check command of the image, compose and the manifests, run as
they run it (``python -m jobplatform.probe``) against the web process as deployed and against
real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jobplatform.probe import main, probe_process
from tests.deploy.support import REPO
from tests.support import free_port, wait_for


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobplatform.probe", *args],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_web_health_endpoint_passes_and_a_missing_page_fails(live_api):
    # Warm: the first request waits for gunicorn's worker to import Django (start_period's job).
    assert httpx.get(f"{live_api}/api/v1/health/", timeout=60).status_code == 200
    health = run_probe(f"{live_api}/api/v1/health/")
    assert health.returncode == 0, health.stderr
    assert health.stdout.startswith("200 ")
    missing = run_probe(f"{live_api}/no-such-page/")
    assert missing.returncode == 1 and missing.stderr.startswith("404 ")


def test_nothing_listening_fails():
    result = run_probe(f"http://127.0.0.1:{free_port()}/api/v1/health/")
    assert result.returncode == 1 and "refused" in result.stderr.lower()


def test_a_running_process_passes_and_an_ended_or_zombie_one_fails(tmp_path: Path):
    marker = f"probe-target-{tmp_path.name}"
    script = "import sys, time; time.sleep(60)"
    target = subprocess.Popen([sys.executable, "-c", script, marker])
    try:
        result = run_probe("--process", marker)
        assert result.returncode == 0, result.stderr
        assert f"running: {target.pid} " in result.stdout
    finally:
        target.kill()
    # Killed and not yet reaped: a zombie, which does not count.
    zombie = Path(f"/proc/{target.pid}/stat")
    wait_for(lambda: zombie.read_text().rsplit(")", 1)[1].split()[0] == "Z", what="a zombie")
    assert probe_process(marker)[0] is False
    target.wait()
    result = run_probe("--process", marker)
    assert result.returncode == 1
    assert "no running process" in result.stderr


def test_the_probe_does_not_find_itself():
    # Its own command line holds the text it looks for.
    assert run_probe("--process", "--process").returncode == 1


@pytest.mark.parametrize("args", [[], ["--process"], ["-x"], ["a", "b"]])
def test_bad_usage_exits_2(args, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("usage: python -m jobplatform.probe")
