"""The I/O pool: a worker on Celery's threads pool keeps every deadline, through its watchdog
(executions/timeouts.py), end to end through the API and a real worker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Platform, running_platform
from tests.support import HttpTarget, wait_for
from tests.support import await_finished as finished
from tests.support import submit_job as submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

THREADS = 8  # more than JOBPLATFORM_BATCH_SPREAD (4), which spreads messages without slots


@pytest.fixture(scope="module")
def io_platform(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """A dispatcher and a worker of THREADS threads (``--pool threads``) for the queue "io"; the
    broker depth not bounded by the rate (QUEUED_SECONDS=0), so that a bulk submission is one
    release."""
    with running_platform(
        tmp_path_factory.mktemp("io"),
        queues="io",
        concurrency=THREADS,
        name="io-worker",
        pool="threads",
        env={"JOBPLATFORM_STEP_ABANDON_AFTER": "0.5", "JOBPLATFORM_DISPATCH_QUEUED_SECONDS": "0"},
    ) as plat:
        yield plat


def dead_letter_reasons(api: Any, job_id: str) -> list[str]:
    response = api.get(f"/api/v1/dead-letters/?job={job_id}")
    assert response.status_code == 200, response.content
    return [entry["reason"] for entry in response.json()["results"]]


def on_io(api: Any, steps: list[dict[str, Any]], **fields: Any) -> str:
    return submit(api, steps, queue="io", **fields)


def test_a_step_past_its_own_timeout_is_timed_out_and_retried_on_the_threads_pool(io_platform, api):
    job_id = on_io(
        api, [{"type": "sleep", "params": {"seconds": 60}, "timeout": 0.3}], max_retries=1
    )
    job = finished(api, job_id, timeout=30)  # far less than the 2 x 60 s the steps asked for
    assert job["status"] == "failed"
    assert [e["error"]["code"] for e in job["executions"]] == ["STEP.TIMEOUT", "STEP.TIMEOUT"]
    assert [e["worker"] for e in job["executions"]] == [io_platform.hostname] * 2
    assert job["executions"][0]["will_retry"] is True
    assert job["last_error"]["type"] == "StepTimeout"
    assert dead_letter_reasons(api, job_id) == ["timeout"]


def test_an_http_answer_slower_than_the_step_deadline_is_timed_out(
    io_platform, api, http_target: HttpTarget
):
    # Every byte comes within the socket's timeout, the whole body in 5 s: only the watchdog
    # sees the deadline pass.
    url = f"{http_target.url}/trickle/50/io-deadline"
    job_id = on_io(api, [{"type": "http", "params": {"url": url}, "timeout": 0.5}], max_retries=0)
    job = finished(api, job_id)
    assert job["status"] == "failed"
    [execution] = job["executions"]
    assert execution["error"]["code"] == "STEP.TIMEOUT"
    assert execution["steps"][0]["error"]["type"] == "StepTimeout"
    assert execution["steps"][0]["duration_ms"] < 5000  # not the whole body's 5 s


def test_the_job_timeout_bounds_the_whole_attempt_on_the_threads_pool(io_platform, api):
    job_id = on_io(
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


def test_busy_python_code_past_its_deadline_is_abandoned_and_its_thread_freed(io_platform, api):
    # A busy loop that never looks at ctx.stop: its attempt is ended without it, then the raise
    # in its thread stops it (the spin asked for 60 s).
    job_id = on_io(
        api, [{"type": "spin", "params": {"seconds": 60}, "timeout": 0.5}], max_retries=0
    )
    job = finished(api, job_id)
    assert job["status"] == "failed"
    [execution] = job["executions"]
    assert execution["error"]["code"] == "STEP.TIMEOUT"
    assert "abandoned" in execution["error"]["message"]
    io_platform.await_worker_log(f"job {job_id} attempt 1 stopped", timeout=15)
    after = finished(api, on_io(api, [{"type": "log", "params": {"message": "after"}}]))
    assert after["status"] == "succeeded"


def test_a_step_that_will_not_stop_is_abandoned_and_its_late_write_is_fenced(io_platform, api):
    # Blocked in time.sleep for 4 s: nothing raised in its thread fires before it returns.
    job_id = on_io(
        api, [{"type": "stuck", "params": {"seconds": 4}, "timeout": 0.3}], max_retries=0
    )
    job = finished(api, job_id)
    assert job["status"] == "failed"
    assert dead_letter_reasons(api, job_id) == ["timeout"]
    [execution] = job["executions"]
    assert execution["status"] == "failed"
    assert execution["error"]["code"] == "STEP.TIMEOUT"
    assert "abandoned" in execution["error"]["message"]
    # The worker serves other jobs while the abandoned thread is still asleep.
    other = finished(api, on_io(api, [{"type": "log", "params": {"message": "meanwhile"}}]))
    assert other["status"] == "succeeded"
    assert f"job {job_id} attempt 1 stopped" not in io_platform.worker_output()
    # The thread wakes up and writes its outcome: the attempt's fence turns it away.
    io_platform.await_worker_log(f"job {job_id} attempt 1 stopped", timeout=15)
    after = finished(api, job_id)
    assert after["status"] == "failed"
    assert after["executions"] == job["executions"]


def test_a_backlog_goes_out_in_at_least_a_message_per_thread_of_the_threads_pool(io_platform, api):
    """The worker's liveness row says it runs THREADS threads on "io"; the dispatcher spreads a
    backlog's jobs over that many messages (jobs.dispatcher.pack), each thread running one
    message's jobs in turn. Spread over BATCH_SPREAD (4) messages of 8 instead, as before, half
    the threads would have had nothing to do. A message's jobs share its delivery id."""
    wait_for(
        lambda: f"'io': {THREADS}" in io_platform.dispatcher_log.read_text(),
        what="the dispatcher to know the worker's threads",
    )
    count = 4 * THREADS
    jobs = [
        {"name": "spread", "queue": "io", "steps": [{"type": "sleep", "params": {"seconds": 0}}]}
        for _ in range(count)
    ]
    response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 201, response.content
    ids = response.json()["ids"]
    done = [finished(api, job_id) for job_id in ids]
    assert {job["status"] for job in done} == {"succeeded"}
    deliveries = Counter(job["executions"][0]["delivery_id"] for job in done)
    # One release of the 32 jobs: k = 32 // THREADS, not 32 // 4 = 8.
    assert sorted(deliveries.values()) == [count // THREADS] * THREADS
