"""End to end through the REST API: a real dispatcher and a real Celery worker (prefork, Redis)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from deadletter.models import DeadLetter
from executions.models import Execution
from jobplatform.celery import app as celery_app
from jobs.models import Job
from tests.support import await_finished as finished
from tests.support import job_detail as detail
from tests.support import submit_job as submit
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def key():
    return uuid.uuid4().hex


def test_a_submitted_job_runs_every_step_and_records_the_result(platform, api, http_target):
    k = key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{k}", "method": "POST",
                                        "json": {"a": 1}, "headers": {"X-Test": "yes"}}},
            {"type": "compute", "params": {"size": 1000}},
            {"type": "log", "params": {"message": "done", "level": "warning"}},
            {"type": "reverse", "params": {"text": "abc"}},
            {"type": "sleep", "params": {"seconds": 0}},
        ],
        input={"who": "me"},
    )  # fmt: skip
    job = finished(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert job["result"] == {"slept": 0}
    assert job["started_at"] and job["finished_at"] and job["queued_at"]
    [execution] = job["executions"]
    assert execution["status"] == "succeeded"
    assert execution["worker"].startswith("test-worker-")
    outputs = [s["output"] for s in execution["steps"]]
    assert [s["status"] for s in execution["steps"]] == ["succeeded"] * 5
    assert outputs[0]["status"] == 200 and outputs[0]["body"] == {"key": k, "hits": 1}
    assert outputs[1] == {"size": 1000, "primes": 168}
    assert outputs[2] == {"message": "done", "level": "warning"}
    assert outputs[3] == {"text": "cba", "previous": {"message": "done", "level": "warning"}}
    assert all(s["duration_ms"] >= 0 for s in execution["steps"])
    sent = http_target.headers[f"/ok/{k}"]
    assert sent["X-Test"] == "yes"
    assert sent["Idempotency-Key"] == f"{job_id}:0"


def test_a_transient_failure_retries_and_resumes_at_the_failed_step(platform, api, http_target):
    first, flaky, last = key(), key(), key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{first}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/flaky/2/{flaky}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{last}"}},
        ],
        max_retries=3,
    )
    job = finished(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 3
    assert [e["status"] for e in job["executions"]] == ["failed", "failed", "succeeded"]
    assert [e["will_retry"] for e in job["executions"]] == [True, True, False]
    # Completed steps are not run again: each attempt starts at the step that failed.
    assert [[s["index"] for s in e["steps"]] for e in job["executions"]] == [[0, 1], [1], [1, 2]]
    assert http_target.count(f"/ok/{first}") == 1
    assert http_target.count(f"/flaky/2/{flaky}") == 3
    assert http_target.count(f"/ok/{last}") == 1
    error = job["executions"][0]["error"]
    assert (error["code"], error["step_index"], error["permanent"]) == (
        "STEP.HTTP_STATUS",
        1,
        False,
    )


def test_a_permanent_failure_ends_the_job_failed_without_retry(platform, api, http_target):
    k = key()
    job_id = submit(
        api,
        [{"type": "http", "params": {"url": f"{http_target.url}/status/404/{k}"}}],
        max_retries=5,
    )
    job = finished(api, job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["last_error"]["code"] == "STEP.HTTP_STATUS"
    assert "answered 404" in job["last_error"]["message"]
    assert http_target.count(f"/status/404/{k}") == 1
    dead = DeadLetter.objects.get(job_id=job_id)
    assert (dead.reason, dead.attempts) == ("permanent", 1)


def test_exhausted_retries_end_the_job_failed_with_every_attempt_recorded(platform, api):
    job_id = submit(api, [{"type": "fail", "params": {"message": "boom"}}], max_retries=2)
    job = finished(api, job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == 3
    assert [e["attempt"] for e in job["executions"]] == [1, 2, 3]
    assert all(e["error"]["message"] == "boom" for e in job["executions"])
    assert "TransientStepError" in job["executions"][-1]["error"]["traceback"]
    assert DeadLetter.objects.get(job_id=job_id).reason == "exhausted"


def test_a_duplicate_delivery_runs_nothing_twice(platform, api, http_target):
    gate, after = key(), key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/block/{gate}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{after}"}},
        ],
    )
    wait_for(lambda: http_target.count(f"/block/{gate}") == 1, what="the first step to run")
    # The same message again, twice, while the first delivery is still running its first step.
    for _ in range(2):
        duplicate = celery_app.send_task("executions.run_job", args=[job_id, 1], queue="default")
        platform.await_worker_log(f"nothing to claim (delivery {duplicate.id})")
    http_target.release(gate)
    assert finished(api, job_id)["status"] == "succeeded"
    # And once more after the job finished.
    duplicate = celery_app.send_task("executions.run_job", args=[job_id, 1], queue="default")
    platform.await_worker_log(f"nothing to claim (delivery {duplicate.id})")
    job = detail(api, job_id)
    assert len(job["executions"]) == 1
    assert http_target.count(f"/block/{gate}") == 1
    assert http_target.count(f"/ok/{after}") == 1


def test_cancelling_a_queued_job_means_it_never_runs(platform, api, user, http_target):
    k = key()
    job_id = submit(
        api,
        [{"type": "http", "params": {"url": f"{http_target.url}/ok/{k}"}}],
        run_at=(timezone.now() + timedelta(hours=1)).isoformat(),
    )
    # Forge the release (the job is far from due) so that its message is on the broker.
    assert Job.objects.filter(id=job_id).update(status=Job.Status.QUEUED) == 1
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    message = celery_app.send_task("executions.run_job", args=[job_id, 1], queue="default")
    platform.await_worker_log(f"nothing to claim (delivery {message.id})")
    assert detail(api, job_id)["executions"] == []
    assert http_target.count(f"/ok/{k}") == 0


def test_cancelling_a_running_job_stops_it_at_the_next_step_boundary(platform, api, http_target):
    gate, after = key(), key()
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/block/{gate}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{after}"}},
        ],
    )
    wait_for(lambda: http_target.count(f"/block/{gate}") == 1, what="the first step to run")
    assert detail(api, job_id)["status"] == "running"
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    http_target.release(gate)
    job = wait_for(
        lambda: (d := detail(api, job_id))["executions"][0]["status"] != "running" and d,
        what="the attempt to stop",
    )
    assert job["status"] == "cancelled"
    assert job["executions"][0]["status"] == "cancelled"
    assert [s["index"] for s in job["executions"][0]["steps"]] == [0]
    assert http_target.count(f"/ok/{after}") == 0


def test_a_job_due_in_the_future_waits_until_due(platform, api, http_target):
    k = key()
    job_id = submit(
        api,
        [{"type": "http", "params": {"url": f"{http_target.url}/ok/{k}"}}],
        run_at=(timezone.now() + timedelta(seconds=1)).isoformat(),
    )
    assert detail(api, job_id)["status"] == "pending"
    job = finished(api, job_id)
    assert job["status"] == "succeeded"
    started = datetime.fromisoformat(job["executions"][0]["started_at"])
    assert started >= datetime.fromisoformat(job["run_at"])


def test_a_backlog_runs_several_jobs_per_message_each_with_its_own_attempt(
    platform, api, http_target
):
    """Jobs due at one instant are released together and go out several per message
    (executions.run_jobs); each still has its own claim, steps, retry decision and outcome."""
    run_at = (timezone.now() + timedelta(seconds=1.5)).isoformat()
    flaky, missing = key(), key()
    fast = {"retry_backoff": 0.05, "retry_backoff_max": 0.2, "run_at": run_at}
    plain = {"name": "batch", "steps": [{"type": "sleep", "params": {"seconds": 0}}], **fast}
    jobs = [plain] * 22 + [
        {**plain, "max_retries": 2,
         "steps": [{"type": "http", "params": {"url": f"{http_target.url}/flaky/1/{flaky}"}}]},
        {**plain,
         "steps": [{"type": "http", "params": {"url": f"{http_target.url}/status/404/{missing}"}}]},
    ]  # fmt: skip
    response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 201, response.content
    ids = response.json()["ids"]
    details = [finished(api, job_id) for job_id in ids]

    assert [(d["status"], d["attempts"]) for d in details] == [("succeeded", 1)] * 22 + [
        ("succeeded", 2),
        ("failed", 1),
    ]
    assert details[22]["executions"][0]["error"]["code"] == "STEP.HTTP_STATUS"
    assert DeadLetter.objects.get(job_id=ids[23]).reason == "permanent"
    assert http_target.count(f"/flaky/1/{flaky}") == 2
    # 24 jobs due at once: the releases hold as many as the broker depth allows (at least 10),
    # and each goes out in messages of n // 4 (JOBPLATFORM_BATCH_SPREAD).
    first = Execution.objects.filter(job_id__in=ids, attempt=1)
    deliveries = Counter(first.values_list("delivery_id", flat=True))
    batches = {delivery: n for delivery, n in deliveries.items() if n > 1}
    assert batches, deliveries
    for delivery, n in batches.items():
        platform.await_worker_log(f"batch {delivery}: {n} jobs")
    # The retry went out as a message of its own.
    [retry] = Execution.objects.filter(job_id=ids[22], attempt=2)
    assert retry.delivery_id not in deliveries
