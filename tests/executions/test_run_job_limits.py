"""Timeouts and prompt cancellation, end to end through the API and a real worker."""

from __future__ import annotations

import pytest

from tests.support import await_finished as finished
from tests.support import job_detail as detail
from tests.support import submit_job as submit
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_step_past_its_own_timeout_is_recorded_as_timed_out_and_retried(platform, api):
    job_id = submit(
        api,
        [{"type": "sleep", "params": {"seconds": 60}, "timeout": 0.3}],
        max_retries=1,
    )
    job = finished(api, job_id, timeout=30)  # far less than the 2 x 60 s the steps asked for
    assert job["status"] == "failed"
    assert [e["error"]["code"] for e in job["executions"]] == ["STEP.TIMEOUT", "STEP.TIMEOUT"]
    assert job["executions"][0]["will_retry"] is True
    assert job["last_error"]["type"] == "StepTimeout"


def test_the_job_timeout_bounds_the_whole_attempt(platform, api):
    job_id = submit(
        api,
        [
            {"type": "sleep", "params": {"seconds": 0.6}},
            {"type": "sleep", "params": {"seconds": 0.6}},
        ],
        timeout=1,
        max_retries=0,
    )
    job = finished(api, job_id)
    assert job["status"] == "failed"
    [execution] = job["executions"]
    assert [s["status"] for s in execution["steps"]] == ["succeeded", "failed"]
    assert execution["steps"][1]["error"]["code"] == "STEP.TIMEOUT"


def test_cancelling_stops_a_long_sleep_promptly_and_records_cancelled(platform, api):
    job_id = submit(api, [{"type": "sleep", "params": {"seconds": 300}}])
    wait_for(
        lambda: [e["status"] for e in detail(api, job_id)["executions"]] == ["running"],
        what="the sleep to start",
    )
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    job = wait_for(
        lambda: (d := detail(api, job_id))["executions"][0]["status"] != "running" and d,
        timeout=15,  # the heartbeat tells the worker within a beat, not after 300 s
        what="the sleeping attempt to stop",
    )
    assert job["status"] == "cancelled"
    assert job["executions"][0]["status"] == "cancelled"
    assert job["executions"][0]["error"] is None
