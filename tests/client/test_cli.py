"""The ``jobplatform`` command, run as a subprocess against the live API with a real worker:
what it prints (``--output json`` for scripts) and the exit codes that say how a job ended."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.client.conftest import FAST_RETRIES, Cli, write
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_submit_with_flags_waits_and_exits_0_when_the_job_succeeds(platform, cli):
    done = cli(
        "submit", "--name", "cli-ok", "--step", "log:message=hi, there,level=warning",
        "--step", "sleep:seconds=0.1", "--input", '{"customer": 42}', "--priority", "8",
        "--set", "timeout=60", "--wait", "-o", "json",
    )  # fmt: skip
    assert done.code == 0, done.err
    job = done.json()
    assert (job["status"], job["priority"], job["timeout"], job["input"]) == (
        "succeeded", 8, 60, {"customer": 42},
    )  # fmt: skip
    assert job["steps"] == [
        {"type": "log", "params": {"message": "hi, there", "level": "warning"}},
        {"type": "sleep", "params": {"seconds": 0.1}},
    ]

    got = cli("get", job["id"])
    assert got.code == 0
    assert f"job {job['id']}  cli-ok" in got.out
    assert "attempt 1: succeeded" in got.out and "step 2 sleep: succeeded" in got.out

    listed = cli("list", "--name", "cli-ok", "--status", "succeeded,failed", "-o", "json")
    assert [j["id"] for j in listed.json()] == [job["id"]]
    table = cli("list", "--filter", "name_contains=cli-")
    assert table.out.splitlines()[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "QUEUE",
        "ATTEMPTS",
        "CREATED",
    ]
    assert job["id"] in table.out


def test_a_job_file_in_yaml_is_watched_to_failure_with_exit_code_1(platform, cli, tmp_path):
    path = write(
        tmp_path / "job.yaml",
        "name: cli-fails\n"
        "max_retries: 1\n"
        f"retry_backoff: {FAST_RETRIES['retry_backoff']}\n"
        "steps:\n"
        "  - type: log\n"
        "    params: {message: starting}\n"
        "  - type: fail\n"
        "    params: {mode: transient, message: upstream down}\n",
    )
    done = cli.process("submit", str(path), "--watch")
    assert done.code == 1, done.err
    lines = [line.split("] ", 1)[1] for line in done.out.splitlines()]
    assert lines[0].endswith("'cli-fails': 2 steps")
    assert "attempt 1 started on test-worker-" in done.out
    assert "attempt 1 step 1/2 log: succeeded" in done.out
    assert "attempt 1 step 2/2 fail: failed" in done.out
    assert any(line.startswith("attempt 1 failed: STEP.FAIL_TRANSIENT: upstream down; next attempt")
               for line in lines)  # fmt: skip
    assert "attempt 2 step 2/2 fail: failed" in done.out  # it resumed at the failed step
    assert lines[-1].startswith("job failed after 2 attempts")
    assert lines[-1].endswith("STEP.FAIL_TRANSIENT: upstream down")


def test_watch_follows_a_job_until_it_is_cancelled_and_exits_3(platform, cli):
    submitted = cli("submit", "--name", "cli-cancel", "--step", "sleep:seconds=30", "-o", "json")
    job_id = submitted.json()["id"]
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL, "text": True}
    with cli.popen("watch", job_id, "--interval", "0.05", **options) as watcher:
        seen: list[str] = []
        wait_for(
            lambda: seen.append(watcher.stdout.readline()) or "attempt 1 started" in seen[-1],
            what="the watcher to see the attempt",
        )
        cancelled = cli("cancel", job_id, "-o", "json")
        assert (cancelled.code, cancelled.json()["status"]) == (0, "cancelled")
        assert watcher.wait(timeout=30) == 3
        rest = watcher.stdout.read()
    events = [line.split("] ", 1)[1] for line in rest.splitlines()]
    # The attempt stops at its worker's next heartbeat: the watch may end before or after.
    assert events[-1].startswith("job cancelled after 1 attempt")

    again = cli("cancel", job_id)
    assert (again.code, again.out.strip()) == (0, f"job {job_id} (cli-cancel): cancelled")


def test_wait_gives_up_with_exit_code_4_and_the_job_goes_on(cli):
    job_id = cli(
        "submit", "--name", "cli-later", "--step", "log:message=later",
        "--run-at", "2099-01-01T00:00:00Z", "-o", "json",
    ).json()["id"]  # fmt: skip
    done = cli.process("wait", job_id, "--timeout", "0.3", "-o", "json")
    assert done.code == 4
    assert done.json()["status"] == "pending"
    assert "still pending after 0.3s" in done.err


def test_errors_exit_2_with_the_api_error_and_5_when_the_api_cannot_be_reached(cli):
    missing = str(uuid.uuid4())
    text = cli.process("get", missing)
    assert text.code == 2
    assert text.err.startswith("jobplatform: JOBS.NOT_FOUND (404):")
    as_json = cli("get", missing, "-o", "json")
    assert as_json.code == 2 and as_json.out == ""
    assert json.loads(as_json.err)["error"]["code"] == "JOBS.NOT_FOUND"
    assert json.loads(as_json.err)["status"] == 404

    invalid = cli("submit", "--name", "x", "--step", "nosuchstep", "-o", "json")
    assert invalid.code == 2
    error = json.loads(invalid.err)["error"]
    assert (error["code"], error["details"]["type"]) == ("JOBS.UNKNOWN_STEP_TYPE", "nosuchstep")

    usage = cli("submit", "--step", "log:message=hi")  # no name
    assert usage.code == 2 and "a job needs a name and steps" in usage.err
    bad_flag = cli("list", "--no-such-flag")
    assert bad_flag.code == 2 and "unrecognized arguments" in bad_flag.err

    anonymous = Cli(url=cli.url, token="")("list")
    assert anonymous.code == 2
    assert anonymous.err.startswith("jobplatform: AUTH.NOT_AUTHENTICATED (401)")
    assert "set JOBPLATFORM_TOKEN" in anonymous.err

    unreachable = cli.process("get", missing, url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.code == 5 and "cannot reach the API" in unreachable.err


def test_dead_letters_are_listed_shown_retried_and_dismissed(platform, cli, jp):
    fail_once = '{"mode": "permanent", "times": 1, "message": "bad input"}'
    first = cli(
        "submit", "--name", "cli-dead", "--step", f"fail:{fail_once}", "--wait", "-o", "json"
    )
    assert first.code == 1
    job_id = first.json()["id"]
    [entry] = cli("dead-letters", "list", "--job", job_id, "-o", "json").json()
    assert (entry["state"], entry["reason"], entry["error_message"]) == (
        "open",
        "permanent",
        "bad input",
    )
    shown = cli("dead-letters", "show", str(entry["id"]))
    assert "PermanentStepError: bad input" in shown.out  # the traceback
    assert "STEP.FAIL_PERMANENT: bad input" in shown.out

    retried = cli("dead-letters", "retry", str(entry["id"]), "--note", "fixed", "-o", "json")
    assert (retried.code, retried.json()["state"]) == (0, "retried")
    assert cli("wait", job_id).code == 0  # the second attempt succeeds

    second = cli("submit", "--name", "cli-dead-2", "--step", f"fail:{fail_once}", "--wait")
    assert second.code == 1
    stats = cli("dead-letters", "stats", "-o", "json").json()
    assert stats["open"] == 1
    dismissed = cli("dead-letters", "dismiss", "--filter", "name_contains=x", "--filter",
                    "reason=permanent", "--note", "obsolete")  # fmt: skip
    assert dismissed.code == 2 and "unknown filter" in dismissed.err  # the API's own check
    dismissed = cli("dead-letters", "dismiss", "--filter", "reason=permanent", "--note", "obsolete")
    assert (dismissed.code, dismissed.out.strip()) == (0, "selected 1, dismissed 1, skipped 0")


def test_a_failed_job_is_retried_by_its_id_and_the_jobs_are_counted(platform, cli, jp):
    fail_once = '{"mode": "permanent", "times": 1, "message": "bad input"}'
    first = cli(
        "submit", "--name", "cli-retry", "--step", f"fail:{fail_once}", "--wait", "-o", "json"
    )
    assert first.code == 1
    job_id = first.json()["id"]
    retried = cli("retry", job_id, "--note", "fixed", "--max-retries", "0", "-o", "json")
    assert retried.code == 0, retried.err
    assert retried.json()["max_retries"] == 0
    assert cli("wait", job_id).code == 0  # the second attempt succeeds
    [entry] = jp.dead_letters.list(job=job_id).results
    assert (entry.state, entry.note) == ("retried", "fixed")  # closed by the job's retry
    assert [e.status for e in jp.jobs.executions(job_id)] == ["failed", "succeeded"]
    again = cli("retry", job_id)
    assert again.code == 2 and "JOBS.NOT_RETRYABLE" in again.err

    stats = cli("stats", "-o", "json").json()
    assert stats["by_status"]["succeeded"] >= 1
    assert stats["last_hour"]["succeeded"] >= 1
    assert "last hour:" in cli("stats").out
    listed = cli("list", "--step-type", "fail", "--name", "cli-retry", "-o", "json").json()
    assert [j["id"] for j in listed] == [job_id]


def test_schedules_are_created_paused_resumed_and_triggered(platform, cli, tmp_path):
    created = cli(
        "schedules", "create", "--name", "cli-schedule", "--cron", "0 3 1 1 *",
        "--timezone", "Europe/Berlin", "--step", "log:message=tick", "--overlap", "skip",
        "-o", "json",
    )  # fmt: skip
    assert created.code == 0, created.err
    schedule = created.json()
    assert (schedule["overlap"], schedule["job"]["steps"][0]["params"]) == (
        "skip",
        {"message": "tick"},
    )
    schedule_id = schedule["id"]

    paused = cli("schedules", "pause", schedule_id, "--note", "vendor down", "-o", "json").json()
    assert (paused["enabled"], paused["pause_note"]) == (False, "vendor down")
    assert cli("schedules", "resume", schedule_id, "-o", "json").json()["enabled"] is True
    listed = cli("schedules", "list")
    assert schedule_id in listed.out and "enabled" in listed.out

    fired = cli("schedules", "trigger", schedule_id, "-o", "json")
    assert fired.code == 0 and fired.json()["outcome"] == "created"
    assert cli("wait", fired.json()["job"]["id"]).code == 0
    shown = cli("schedules", "show", schedule_id)
    assert "cron         0 3 1 1 *  (Europe/Berlin)" in shown.out
    assert f"recent job   {fired.json()['job']['id']}  succeeded" in shown.out

    from_file = write(
        tmp_path / "schedule.json",
        json.dumps(
            {
                "name": "cli-file",
                "cron": "@daily",
                "job": {"steps": [{"type": "log", "params": {"message": "x"}}]},
            }
        ),
    )
    assert (
        cli("schedules", "create", str(from_file), "--paused", "-o", "json").json()["enabled"]
        is False
    )
    assert cli("schedules", "delete", schedule_id).code == 0
    assert cli("schedules", "show", schedule_id).code == 2


def test_steps_health_and_the_console_script(cli):
    steps = cli("steps", "-o", "json").json()
    assert {"sleep", "log", "compute", "fail", "http"} <= {s["name"] for s in steps}
    text = cli("steps").out
    assert "sleep: " in text and "  seconds (number, required)" in text
    health = cli("health")
    assert (health.code, health.out.strip()) == (0, "ok: database ok, broker ok, migrations ok")

    script = Path(sys.executable).with_name("jobplatform")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "jobplatform 0.1.0"


def test_watch_on_a_terminal_draws_a_live_status_line(platform, cli, jp):
    steps = ("--step", "sleep:seconds=30", "--step", "log:message=x")
    job_id = cli("submit", "--name", "cli-tty", *steps, "-o", "json").json()["id"]
    leader, follower = pty.openpty()
    options = {"stdout": follower, "stderr": subprocess.DEVNULL, "env": {"COLUMNS": "160"}}
    with cli.popen("watch", job_id, "--interval", "0.05", **options) as watcher:
        os.close(follower)
        screen = b""
        running = "cli-tty  running  attempt 1/4  step 1/2 sleep  ["

        def read() -> bytes:
            nonlocal screen
            chunk = b""
            if select.select([leader], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):  # EIO: the watcher exited
                    chunk = os.read(leader, 65536)
            screen += chunk
            return chunk

        wait_for(lambda: read() and running in screen.decode(errors="replace"), what="the status")
        jp.jobs.cancel(job_id)
        assert watcher.wait(timeout=30) == 3
        while read():
            pass
    os.close(leader)
    text = screen.decode()
    assert "\r\x1b[K" in text  # the status line is redrawn in place
    assert "] 0/2" in text  # the progress bar, no step done yet
    assert "job cancelled after 1 attempt" in text
