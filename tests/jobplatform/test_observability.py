"""Metrics and logs of the real processes: gunicorn, the dispatcher and a prefork worker, sharing
one metrics directory and logging JSON lines (make run's layout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from jobs.models import Job
from tests.conftest import REPO
from tests.support import TERMINAL, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Http:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(  # noqa: S310
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Token {self.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            text = response.read().decode()
            kind = response.headers.get("Content-Type", "")
            return (
                response.status,
                dict(response.headers),
                json.loads(text) if "json" in kind else text,
            )

    def submit(self, steps: list[dict[str, Any]], **fields: Any) -> str:
        body = {"name": "observed", "steps": steps, "retry_backoff": 0.05, **fields}
        status, _, job = self.request("POST", "/api/v1/jobs/", body)
        assert status == 201, job
        return str(job["id"])


@pytest.fixture
def http(web, platform, staff) -> Http:
    return Http(web.url, Token.objects.create(user=staff).key)


def samples(http: Http) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    bearer = {"Authorization": f"Bearer {settings.JOBPLATFORM_METRICS_TOKEN}"}
    status, _, text = http.request("GET", "/metrics", headers=bearer)
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, metric: str, /, **labels: str) -> float:
    return scrape.get((metric, frozenset(labels.items())), 0.0)


def await_finished(job_ids: list[str]) -> None:
    wait_for(
        lambda: Job.objects.filter(id__in=job_ids, status__in=TERMINAL).count() == len(job_ids),
        timeout=60,
        what="the jobs to finish",
    )


LOG = [{"type": "log", "params": {"message": "observed"}}]
SLEEP = [{"type": "sleep", "params": {"seconds": 0}}]


def test_metrics_count_what_the_platform_did(http, platform, http_target):
    before = samples(http)
    succeeding = [http.submit(LOG + SLEEP), http.submit(LOG)]
    retried = http.submit([{"type": "fail", "params": {"times": 1}}], max_retries=2)
    dead = http.submit([{"type": "fail", "params": {"mode": "permanent"}}])
    await_finished([*succeeding, retried, dead])
    # Waiting work, on a queue no dispatcher of the tests serves: one due, one due in an hour.
    http.submit(LOG, queue="dispatch-probe")
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    http.submit(LOG, queue="dispatch-probe", run_at=later)

    after = samples(http)

    def delta(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    default = {"queue": "default"}
    assert delta("jobplatform_jobs_submitted_total", **default) == 4
    assert delta("jobplatform_jobs_submitted_total", queue="dispatch-probe") == 2
    assert delta("jobplatform_attempts_started_total", **default) == 5
    finished = {
        outcome: delta("jobplatform_attempts_finished_total", outcome=outcome, **default)
        for outcome in ("succeeded", "retried", "failed", "cancelled")
    }
    assert finished == {"succeeded": 3, "retried": 1, "failed": 1, "cancelled": 0}
    assert delta("jobplatform_dead_letters_total", reason="permanent", **default) == 1
    assert delta("jobplatform_attempt_duration_seconds_count", **default) == 5
    assert delta("jobplatform_start_lag_seconds_count", **default) == 5
    assert delta("jobplatform_step_duration_seconds_count", step_type="log") == 2
    assert delta("jobplatform_step_duration_seconds_count", step_type="sleep") == 1
    assert delta("jobplatform_step_duration_seconds_count", step_type="fail") == 3
    # Four first attempts and the retry's, which the dispatcher releases when due.
    assert delta("jobplatform_dispatcher_published_total", reason="due") == 5
    assert delta("jobplatform_dispatcher_release_batch_size_sum") == 5
    assert delta("jobplatform_dispatcher_loop_seconds_count") > 0

    # Read from PostgreSQL at scrape time.
    assert value(after, "jobplatform_scrape_database_ok") == 1
    probe = {"queue": "dispatch-probe"}
    assert value(after, "jobplatform_queue_jobs", state="pending", **probe) == 1
    assert value(after, "jobplatform_queue_jobs", state="scheduled", **probe) == 1
    assert value(after, "jobplatform_queue_jobs", state="queued", **probe) == 0
    assert value(after, "jobplatform_queue_oldest_due_age_seconds", state="pending", **probe) > 0
    assert value(after, "jobplatform_jobs_waiting", reason="release", **probe) == 1
    assert value(after, "jobplatform_jobs_waiting", reason="run_at", **probe) == 1
    assert value(after, "jobplatform_jobs_waiting", reason="release", **default) == 0
    for state in ("pending", "scheduled", "queued", "retrying", "running"):
        assert value(after, "jobplatform_queue_jobs", state=state, **default) == 0
    assert value(after, "jobplatform_dead_letters_open", **default) == 1
    assert value(after, "jobplatform_processes_alive", role="worker") >= 1
    assert value(after, "jobplatform_processes_alive", role="dispatcher") >= 1
    age = value(
        after, "jobplatform_process_heartbeat_age_seconds", role="worker", name=platform.hostname
    )
    assert 0 <= age < 1.5  # JOBPLATFORM_LIVENESS_INTERVAL is 0.5 s in the tests


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON lines of a log (Celery's start-up banner is not one)."""
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def test_one_trace_id_follows_a_job_from_the_api_to_the_worker(http, web, platform):
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    status, headers, job = http.request(
        "POST",
        "/api/v1/jobs/",
        {"name": "traced", "steps": LOG + SLEEP},
        headers={"traceparent": traceparent},
    )
    assert status == 201
    assert headers["X-Request-ID"] == TRACE
    assert job["trace_id"] == TRACE
    job_id = job["id"]
    await_finished([job_id])
    request_line = wait_for(
        lambda: next((e for e in json_lines(web.output()) if e.get("job_id") == job_id), None),
        what="the API's line",
    )
    assert request_line["trace_id"] == TRACE
    assert request_line["role"] == "web"
    assert (request_line["method"], request_line["path"], request_line["status"]) == (
        "POST",
        "/api/v1/jobs/",
        201,
    )

    def worker_lines() -> list[dict[str, Any]]:
        lines = [e for e in json_lines(platform.worker_output()) if e.get("job_id") == job_id]
        done = any("succeeded in" in e["message"] for e in lines)
        return lines if done else []

    lines = wait_for(worker_lines, what="the worker's lines of the job")
    assert {e["trace_id"] for e in lines} == {TRACE}
    assert {e["role"] for e in lines} == {"worker"}
    by_logger = {e["logger"]: e for e in lines}
    # The main process received it, a pool process ran it: both lines carry the trace.
    assert by_logger["celery.worker.strategy"]["message"].endswith("received")
    assert "succeeded in" in by_logger["celery.app.trace"]["message"]
    assert by_logger["celery.worker.strategy"]["pid"] != by_logger["celery.app.trace"]["pid"]
    step_line = by_logger["jobplatform.steps"]
    assert (step_line["message"], step_line["step"], step_line["step_type"]) == (
        "observed",
        0,
        "log",
    )
    assert {e["attempt"] for e in lines} == {1}
    # No worker line names the trace without the job: it never leaks to another task's lines.
    for event in json_lines(platform.worker_output()):
        if event.get("trace_id") == TRACE:
            assert event["job_id"] == job_id


def test_a_request_id_is_the_trace_of_a_bulk_submission(http):
    status, headers, body = http.request(
        "POST",
        "/api/v1/jobs/bulk/",
        {"jobs": [{"name": "bulk", "steps": LOG}] * 2},
        headers={"X-Request-ID": "deploy-7.check"},
    )
    assert status == 201
    assert headers["X-Request-ID"] == "deploy-7.check"
    traces = set(Job.objects.filter(id__in=body["ids"]).values_list("trace_id", flat=True))
    assert traces == {"deploy-7.check"}


@pytest.mark.django_db(transaction=False)
def test_an_empty_metrics_directory_means_none(tmp_path):
    """prometheus-client alone would take PROMETHEUS_MULTIPROC_DIR= for the current directory."""
    code = (
        "import jobplatform, prometheus_client.values as v, jobplatform.metrics as m;"
        "m.ATTEMPTS_STARTED.labels('q').inc(); print(v.ValueClass.__name__)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "PYTHONPATH": str(REPO)}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "MutexValue", out.stderr
    assert list(tmp_path.iterdir()) == []  # no counter_<pid>.db here
