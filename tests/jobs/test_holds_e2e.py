"""Rate limits and circuit breakers end to end: through the REST API, with real workers and
dispatchers, and a real local HTTP server for the http steps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from executions.models import Execution
from jobs import ratelimit
from jobs.models import CircuitBreaker, Hold, Job
from tests.conftest import client_for, running_platform
from tests.support import HttpTarget, await_finished, job_detail, submit_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOG = [{"type": "log", "params": {"message": "limited"}}]


@pytest.fixture(scope="module")
def second_worker(platform: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Another worker and another dispatcher for the session platform's queue: two of each
    draw from the one bucket."""
    with running_platform(
        tmp_path_factory.mktemp("second"), queues="default", name="second-worker"
    ):
        yield


def reason(detail: dict[str, Any]) -> str | None:
    return detail["waiting_for"][0]["reason"] if detail["waiting_for"] else None


def held_detail(api: Any, ids: list[str]) -> dict[str, Any] | None:
    """The detail of a job held by the rate limit (one the dispatcher may bring back meanwhile
    is skipped: the bulk's jobs were submitted at one instant, so which goes next is open)."""
    for job_id in Job.objects.filter(id__in=ids, hold=Hold.RATE_LIMIT).values_list("id")[:5]:
        detail = job_detail(api, str(job_id[0]))
        if reason(detail) == "rate_limit":
            return detail
    return None


def test_a_5_per_second_limit_holds_across_two_workers_and_two_dispatchers(
    platform, second_worker, api, admin
):
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    response = client_for(admin).put(
        f"/api/v1/rate-limits/{name}/", {"rate": 5, "burst": 5}, format="json"
    )
    assert response.status_code == 200, response.content
    try:
        jobs = [{"name": "limited", "steps": LOG, "rate_limit": name}] * 20
        response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
        assert response.status_code == 201, response.content
        ids = response.json()["ids"]
        # Jobs wait for their tokens, parked, pending, no attempt spent, and say so.
        held = wait_for(lambda: held_detail(api, ids), what="a job to wait for the rate limit")
        assert (held["status"], held["attempts"]) == ("pending", 0)
        assert all(await_finished(api, i)["status"] == "succeeded" for i in ids)
    finally:
        ratelimit.forget(name)
    executions = list(Execution.objects.filter(job_id__in=ids))
    assert len(executions) == 20  # one attempt each: waiting spent none
    assert len({e.worker for e in executions}) == 2
    # The limit applies where jobs start their way, at release: each job's release time, set by
    # the release that took its token (queued_at, the release transaction's start). A bucket of
    # 5 tokens refilled at 5 a second lets at most 5 + 5 go in any second; one more may count
    # in it, its release having waited for the other dispatcher's. Unlimited, the 20 no-op
    # jobs would all go within a fraction of a second. (Counted at the workers' starts instead,
    # the same bound holds on an idle machine, but starts bunch up when the machine is busy.)
    released = sorted(Job.objects.filter(id__in=ids).values_list("queued_at", flat=True))
    second = timedelta(seconds=1)
    most = max(sum(1 for t in released if s <= t < s + second) for s in released)
    assert most <= 11, released


def test_a_breaker_opens_on_503s_holds_jobs_unspent_and_closes_when_the_server_recovers(
    platform, api
):
    server = HttpTarget()  # a host of its own: its own breaker
    host = server.url.removeprefix("http://")
    path = f"/flaky/5/{uuid.uuid4().hex[:8]}"  # 503 for the first 5 requests, then 200
    step = [{"type": "http", "params": {"url": server.url + path}}]
    try:
        # JOBPLATFORM_BREAKER_FAILURES (5) transient failures within the window open it.
        tripping = [submit_job(api, step, max_retries=0) for _ in range(5)]
        assert all(await_finished(api, j)["status"] == "failed" for j in tripping)
        breaker = api.get(f"/api/v1/breakers/{host}/").json()
        assert (breaker["state"], breaker["failures"]) == ("open", 5)

        held = [submit_job(api, step, max_retries=3) for _ in range(3)]
        for job in held:
            detail = wait_for(
                lambda job=job: reason(d := job_detail(api, job)) == "circuit_breaker" and d,
                what="the job to be held by the breaker",
            )
            assert (detail["status"], detail["attempts"]) == ("pending", 0)
        assert api.get(f"/api/v1/breakers/{host}/").json()["held"] == 3
        assert server.count(path) == 5  # nothing more reached the failing host

        # The cooldown (JOBPLATFORM_BREAKER_COOLDOWN, 30 s) forged over: a probe goes, the
        # server has recovered, the breaker closes and the held jobs run, one attempt each.
        CircuitBreaker.objects.filter(host=host).update(retry_at=timezone.now())
        for job in held:
            detail = await_finished(api, job)
            assert (detail["status"], detail["attempts"]) == ("succeeded", 1)
        breaker = api.get(f"/api/v1/breakers/{host}/").json()
        assert (breaker["state"], breaker["held"]) == ("closed", 0)
        assert server.count(path) == 8
    finally:
        server.close()
