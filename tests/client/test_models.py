"""The client's models and the watch display, from API answers as the API writes them (no
server needed): fields the client does not know are kept, fields it expects may be missing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from jobplatform_client import DeadLetter, Job, Schedule, StepError
from jobplatform_client.errors import ApiError
from jobplatform_client.watch import JobChanges, progress_bar, status_line

T0 = "2026-01-01T09:00:00Z"
T1 = "2026-01-01T09:00:01.250000Z"

JOB = {
    "id": "dc9dd46c-0000-4000-8000-000000000001",
    "name": "nightly-report",
    "status": "pending",
    "owner": "alice",
    "queue": "default",
    "priority": 5,
    "attempts": 0,
    "run_at": T0,
    "schedule": None,
    "scheduled_for": None,
    "created_at": T0,
    "started_at": None,
    "finished_at": None,
    "links": {"self": "http://h/api/v1/jobs/dc9d/", "cancel": "http://h/api/v1/jobs/dc9d/cancel/"},
    "steps": [{"type": "log", "params": {"message": "a"}}, {"type": "fail", "params": {}}],
    "input": {},
    "max_retries": 1,
    "retry_backoff": 2.0,
    "retry_backoff_max": 300.0,
    "retry_jitter": True,
    "timeout": 3600,
    "next_step": 0,
    "result": None,
    "last_error": None,
    "next_attempt_at": None,
    "trace_id": "abc",
    "updated_at": T0,
    "queued_at": None,
    "executions": [],
}


def test_a_job_keeps_fields_the_client_does_not_know_and_tolerates_missing_ones():
    data = {**JOB, "waiting_for": {"queue": "default", "reason": "paused"}, "callback_url": "x"}
    del data["trace_id"]
    job = Job.from_api(data)
    assert job.raw["waiting_for"] == {"queue": "default", "reason": "paused"}
    assert job.raw["callback_url"] == "x"
    assert job.trace_id is None
    assert job.run_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert job.steps[1] == {"type": "fail", "params": {}}
    assert job.executions == () and not job.is_terminal
    assert "waiting for queue=default, reason=paused" in status_line(job, elapsed=3)

    summary = Job.from_api({k: JOB[k] for k in list(JOB)[:14]})
    assert (summary.steps, summary.executions, summary.input) == (None, None, None)


def test_attempts_steps_and_errors_are_typed():
    error = {
        "type": "PermanentStepError",
        "code": "STEP.FAIL_PERMANENT",
        "message": "bad",
        "permanent": True,
        "step_index": 1,
        "step_type": "fail",
        "traceback": "Traceback…",
        "new_key": 1,
    }
    execution = {
        "attempt": 1,
        "status": "failed",
        "worker": "w@h",
        "delivery_id": "d",
        "started_at": T0,
        "finished_at": T1,
        "error": error,
        "will_retry": False,
        "retry_at": None,
        "steps": [
            {
                "index": 0,
                "type": "log",
                "status": "succeeded",
                "output": {"m": 1},
                "error": None,
                "started_at": T0,
                "duration_ms": 0.7,
            },
            {
                "index": 1,
                "type": "fail",
                "status": "failed",
                "output": None,
                "error": error,
                "started_at": T1,
                "duration_ms": 1.0,
            },
        ],
    }
    job = Job.from_api({**JOB, "status": "failed", "executions": [execution], "last_error": error})
    [attempt] = job.executions
    assert attempt.finished_at - attempt.started_at == timedelta(seconds=1.25)
    assert attempt.error == job.last_error == attempt.steps[1].error
    assert isinstance(job.last_error, StepError)
    assert (job.last_error.code, job.last_error.permanent, job.last_error.step_index) == (
        "STEP.FAIL_PERMANENT",
        True,
        1,
    )
    assert job.last_error.raw["new_key"] == 1
    assert attempt.steps[0].error is None and attempt.steps[0].output == {"m": 1}


def test_schedules_and_dead_letters_parse_their_nested_objects():
    schedule = Schedule.from_api(
        {
            "id": "s1",
            "name": "n",
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "job": {"steps": []},
            "enabled": False,
            "pause_note": "why",
            "next_fire_times": [
                {
                    "at": "2026-03-29T03:00:00+02:00",
                    "utc": "2026-03-29T01:00:00Z",
                    "local_time": "2026-03-29T02:30:00",
                    "moved": True,
                    "transition": "gap",
                }
            ],
        }
    )
    [tick] = schedule.next_fire_times
    assert (tick.moved, tick.transition, tick.at.utcoffset()) == (True, "gap", timedelta(hours=2))
    assert tick.at == tick.utc
    assert (schedule.enabled, schedule.recent_firings, schedule.recent_jobs) == (False, None, ())

    dead = DeadLetter.from_api(
        {
            "id": 17,
            "state": "open",
            "reason": "exhausted",
            "created_at": T0,
            "job": {"id": "j", "name": "n", "status": "failed", "queue": "default", "owner": "a"},
        }
    )
    assert (dead.job.status, dead.executions, dead.note) == ("failed", None, "")


def test_an_error_answer_that_is_not_the_envelope_still_gives_a_code():
    import httpx

    request = httpx.Request("GET", "http://h/api/v1/jobs/")
    proxy = httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
    error = ApiError.from_response(proxy, retry_after=None)
    assert (error.status, error.code, error.message) == (
        502,
        "HTTP.502",
        "<html>Bad Gateway</html>",
    )
    api = httpx.Response(
        404, json={"error": {"code": "JOBS.NOT_FOUND", "message": "No such job."}}, request=request
    )
    error = ApiError.from_response(api, retry_after=None)
    assert (error.code, error.message, error.details) == ("JOBS.NOT_FOUND", "No such job.", {})
    assert error.as_dict() == {
        "error": {"code": "JOBS.NOT_FOUND", "message": "No such job.", "details": {}},
        "status": 404,
    }


def _snapshot(**changes):
    data = copy.deepcopy(JOB)
    data.update(changes)
    return Job.from_api(data)


def test_watch_events_say_what_changed_between_snapshots_even_when_polls_skip_states():
    step0 = {
        "index": 0,
        "type": "log",
        "status": "succeeded",
        "output": {},
        "error": None,
        "started_at": T0,
        "duration_ms": 0.7,
    }
    error = {"type": "TransientStepError", "code": "STEP.FAIL_TRANSIENT", "message": "down"}
    step1 = {
        "index": 1,
        "type": "fail",
        "status": "failed",
        "output": None,
        "error": error,
        "started_at": T0,
        "duration_ms": 1.2,
    }
    running = {
        "attempt": 1,
        "status": "running",
        "worker": "w@h",
        "started_at": T0,
        "steps": [step0],
    }
    failed = {
        **running,
        "status": "failed",
        "error": error,
        "will_retry": True,
        "retry_at": "2026-01-01T09:00:03Z",
        "steps": [step0, step1],
    }
    second = {
        "attempt": 2,
        "status": "failed",
        "worker": "w@h",
        "error": error,
        "will_retry": False,
        "steps": [{**step1}],
    }
    changes = JobChanges()
    assert changes.events(_snapshot()) == [
        f"job {JOB['id']} 'nightly-report': 2 steps",
        "status pending",
    ]
    assert changes.events(_snapshot(status="running", attempts=1, executions=[running])) == [
        "attempt 1 started on w@h",
        "attempt 1 step 1/2 log: succeeded in 1 ms",
    ]
    # The next poll finds the second attempt over already: nothing is left out.
    last = _snapshot(
        status="failed",
        attempts=2,
        executions=[failed, second],
        last_error=error,
        finished_at="2026-01-01T09:00:05Z",
    )
    assert changes.events(last) == [
        "attempt 1 step 2/2 fail: failed in 1 ms (STEP.FAIL_TRANSIENT: down)",
        "attempt 1 failed: STEP.FAIL_TRANSIENT: down; next attempt at 09:00:03Z",
        "attempt 2 started on w@h",
        "attempt 2 step 2/2 fail: failed in 1 ms (STEP.FAIL_TRANSIENT: down)",
        "attempt 2 failed: STEP.FAIL_TRANSIENT: down",
        "job failed after 2 attempts, 5.0s after submission: STEP.FAIL_TRANSIENT: down",
    ]
    assert changes.events(last) == []


def test_the_status_line_shows_the_step_running_and_the_progress():
    job = _snapshot(status="running", attempts=1, next_step=1)
    line = status_line(job, elapsed=75, spinner="|", unicode=False)
    assert line == (
        "|  nightly-report  running  attempt 1/2  step 2/2 fail  [##########----------] 1/2  1m15s"
    )
    assert progress_bar(2, 2, width=4) == "[████]"
    assert progress_bar(0, 0, width=4) == "[░░░░]"
