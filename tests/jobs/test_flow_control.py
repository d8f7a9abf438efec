"""Flow control end to end, through the REST API, with a real dispatcher and a real worker.

The worker of this module serves two queues, "flow" first and "flow-b", with four processes, so
that a concurrency key of 2 or a cap of 3 is what binds, not the pool. Each test asserts what
would fail without the control it is about: a flood that keeps the queue busy, a backlog that
would otherwise run first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from executions.models import Execution
from jobplatform.roles import Role
from jobs.dispatcher import publish_attempts
from jobs.models import Job
from jobs.services import ReleasedJob
from tests.conftest import client_for, running_platform
from tests.factories import UserFactory, with_role
from tests.jobs.factories import JobFactory
from tests.support import TERMINAL, await_finished, job_detail, submit_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def sleeping(seconds: float) -> list[dict[str, Any]]:
    return [{"type": "sleep", "params": {"seconds": seconds}}]


@pytest.fixture(scope="module")
def flow_platform(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A dispatcher and a four-process worker for the queues "flow" and "flow-b"."""
    with running_platform(
        tmp_path_factory.mktemp("flow"),
        queues="flow,flow-b",
        concurrency=4,
        name="flow-worker",
        # Room freed by a finishing job is seen within 10 ms: the tests stay short.
        env={"JOBPLATFORM_DISPATCH_HELD_POLL": "0.01"},
    ):
        yield


@pytest.fixture
def operator(admin: Any) -> Any:
    """An admin's client: only admins cap a queue (operators pause and resume one)."""
    return client_for(admin)


def set_cap(operator: Any, queue: str, cap: int | None) -> None:
    response = operator.patch(f"/api/v1/queues/{queue}/", {"max_in_flight": cap}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["max_in_flight"] == cap


def bulk(api: Any, count: int, **fields: Any) -> list[str]:
    jobs = [{"name": "flood", "steps": sleeping(0.02), **fields}] * count
    response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["ids"]


def unfinished(ids: list[str]) -> int:
    return Job.objects.filter(id__in=ids).exclude(status__in=TERMINAL).count()


def started(ids: list[str]) -> int:
    return Execution.objects.filter(job_id__in=ids).count()


def max_overlap(executions: list[Execution]) -> int:
    """The most attempts that ran at one instant, from their start and end times."""
    edges = sorted(
        [(e.started_at, 1) for e in executions] + [(e.finished_at, -1) for e in executions]
    )  # at equal instants an end sorts before a start: touching attempts do not overlap
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize("cap", [None, 4], ids=["defaults", "capped"])
def test_a_client_with_one_job_is_served_while_another_floods(flow_platform, api, operator, cap):
    """With the defaults, the flood waits in PostgreSQL beyond the broker's quarter second of
    work and the job is released at once, behind that; with a cap, it takes the next slot."""
    set_cap(operator, "flow", cap)
    flood = bulk(api, 300, queue="flow")
    wait_for(lambda: started(flood) >= 10, what="the flood to be running")
    other = client_for(with_role(UserFactory(), Role.OPERATOR))
    mine = submit_job(other, sleeping(0), queue="flow")
    assert await_finished(other, mine)["status"] == "succeeded"
    # Served within a release round, not behind the flood: most of it has not even started.
    assert unfinished(flood) >= 150


@pytest.mark.parametrize("cap", [None, 4], ids=["defaults", "capped"])
def test_a_priority_9_job_overtakes_a_backlog_of_its_queue(flow_platform, api, operator, cap):
    """The backlog waits in PostgreSQL (beyond the broker's quarter second of work, or beyond
    the cap), where the release takes the urgent job first."""
    set_cap(operator, "flow", cap)
    # Jobs of 0.2 s: the backlog lasts three seconds on four processes, long beside the urgent
    # job's way through the API and the release even on a loaded machine, and its release rate
    # (20 jobs/s) keeps the broker's quarter second of work near its floor of 10 jobs.
    backlog = bulk(api, 60, queue="flow", priority=0, steps=sleeping(0.2))
    wait_for(lambda: started(backlog) >= 8, what="the backlog to be running")
    urgent = submit_job(api, sleeping(0), queue="flow", priority=9)
    assert await_finished(api, urgent)["status"] == "succeeded"
    urgent_start = Execution.objects.get(job_id=urgent).started_at
    before = Execution.objects.filter(job_id__in=backlog, started_at__lt=urgent_start).count()
    # Only what was running or already in the broker went first.
    assert len(backlog) - before >= 30, f"the urgent job waited behind {before} of the backlog"


def test_the_broker_serves_the_urgent_message_first(flow_platform, api, user):
    """What the release put in the broker keeps the release's order: with every process of the
    worker busy, 20 priority-0 messages and then a priority-9 one wait in Redis; the next
    process to free up takes the priority-9 one."""
    busy = [submit_job(api, sleeping(1), queue="flow") for _ in range(4)]
    wait_for(
        lambda: Job.objects.filter(id__in=busy, status="running").count() == 4,
        what="every process of the worker to be busy",
    )
    # Released as the dispatcher would (QUEUED, then published in release order), at once.
    backlog = JobFactory.create_batch(
        20, owner=user, queue="flow", status=Job.Status.QUEUED, queued_at=timezone.now(),
        priority=0,
    )  # fmt: skip
    urgent = JobFactory(
        owner=user, queue="flow", status=Job.Status.QUEUED, queued_at=timezone.now(), priority=9
    )
    publish_attempts(
        [
            ReleasedJob(id=j.id, queue="flow", priority=j.priority, attempt=1, timeout=60)
            for j in [*backlog, urgent]
        ]
    )
    wait_for(lambda: unfinished([str(j.id) for j in [*backlog, urgent]]) == 0, timeout=60,
             what="the messages to be run")  # fmt: skip
    order = list(
        Execution.objects.filter(job_id__in=[j.id for j in [*backlog, urgent]])
        .order_by("started_at")
        .values_list("job_id", flat=True)
    )
    # The four processes free up at about the same moment: the urgent job is among the first
    # four to start, not the twenty-first.
    assert order.index(urgent.id) < 4, order.index(urgent.id)


def test_two_queues_served_by_one_worker_both_progress(flow_platform, api):
    """The worker lists "flow" first; a busy first queue must not starve "flow-b"."""
    # 150 jobs of 0.1 s: nearly four seconds of the four processes' work, so "flow-b" being
    # served before two thirds of it is not a race with a loaded machine's API calls.
    flood = bulk(api, 150, queue="flow", steps=sleeping(0.1))
    other = [submit_job(api, sleeping(0), queue="flow-b") for _ in range(5)]
    for job_id in other:
        assert await_finished(api, job_id)["status"] == "succeeded"
    assert unfinished(flood) >= 50


def test_jobs_of_one_key_never_run_more_than_max_concurrency_at_once(flow_platform, api):
    ids = bulk(api, 200, queue="flow", concurrency_key="customer:42", max_concurrency=2)
    wait_for(lambda: unfinished(ids) == 0, timeout=60, what="the keyed jobs to finish")
    assert Job.objects.filter(id__in=ids, status="succeeded", attempts=1).count() == 200
    executions = list(Execution.objects.filter(job_id__in=ids))
    assert max_overlap(executions) == 2  # the key binds, the pool of four does not


def test_a_queues_cap_is_never_exceeded(flow_platform, api, operator):
    set_cap(operator, "flow-b", 3)
    ids = bulk(api, 60, queue="flow-b")
    seen = []

    def in_flight_then_done() -> bool:
        seen.append(Job.objects.filter(queue="flow-b", status__in=["queued", "running"]).count())
        return unfinished(ids) == 0

    wait_for(in_flight_then_done, timeout=60, what="the capped jobs to finish")
    assert max(seen) == 3  # the cap binds: the release fills it, never past it
    # and the worker (four processes) never ran more at once; how close it came is its speed's.
    assert max_overlap(list(Execution.objects.filter(job_id__in=ids))) <= 3


def test_a_paused_queue_holds_its_jobs_lets_running_ones_finish_and_resumes(
    flow_platform, api, operator
):
    running = submit_job(api, sleeping(0.5), queue="flow")
    wait_for(lambda: job_detail(api, running)["status"] == "running", what="the first job to run")
    response = operator.post("/api/v1/queues/flow/pause/")
    assert response.status_code == 200 and response.json()["paused"] is True
    held = submit_job(api, sleeping(0), queue="flow")
    # A job of the other queue, submitted after: once it ran, a release has seen the held one.
    assert await_finished(api, submit_job(api, sleeping(0), queue="flow-b"))["status"] == (
        "succeeded"
    )
    assert await_finished(api, running)["status"] == "succeeded"
    detail = job_detail(api, held)
    assert (detail["status"], detail["attempts"]) == ("pending", 0)
    assert [r["reason"] for r in detail["waiting_for"]] == ["paused_queue"]

    response = operator.post("/api/v1/queues/flow/resume/")
    assert response.status_code == 200 and response.json()["paused"] is False
    assert await_finished(api, held)["status"] == "succeeded"
