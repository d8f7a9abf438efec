"""What an http step's outcome tells its host's circuit breaker (executions.pipeline): a success
is reported only when a breaker of the job's hosts was not closed at the claim (Claim.breakers),
so that the common case, every breaker closed, costs no statement; a probe's success still
closes its half-open breaker. In-process attempts against a real local server and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution
from executions.pipeline import execution_run
from jobs.models import CircuitBreaker, Job
from jobs.steps.http import steps_hosts
from tests.jobs.factories import JobFactory
from tests.support import HttpTarget, wait_for

OPEN, HALF_OPEN, CLOSED = (
    CircuitBreaker.State.OPEN,
    CircuitBreaker.State.HALF_OPEN,
    CircuitBreaker.State.CLOSED,
)


def http_job(user, url: str) -> Job:
    steps = [{"type": "http", "params": {"url": url}}]
    return JobFactory.create(
        owner=user, steps=steps, hosts=steps_hosts(steps), status=Job.Status.QUEUED
    )


def run(job: Job) -> str:
    return execution_run(job_id=job.id, attempt=1, delivery_id="d", worker="w").status


def breaker_writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "jobs_circuitbreaker"')]


@pytest.mark.django_db
def test_a_success_while_the_hosts_breaker_is_closed_writes_nothing_to_it(user, http_target):
    job = http_job(user, f"{http_target.url}/status/200/closed")
    host = job.hosts[0]
    CircuitBreaker.objects.create(host=host, failures=1)  # closed, one failure counted
    with CaptureQueriesContext(connection) as queries:
        assert run(job) == Execution.Status.SUCCEEDED
    assert breaker_writes(queries) == []
    assert CircuitBreaker.objects.filter(host=host, state=CLOSED, failures=1).exists()
    other = http_job(user, f"{http_target.url}/status/200/no-row")  # no breaker row at all
    CircuitBreaker.objects.filter(host=host).delete()
    with CaptureQueriesContext(connection) as queries:
        assert run(other) == Execution.Status.SUCCEEDED
    assert breaker_writes(queries) == []


@pytest.mark.django_db
def test_a_probes_success_closes_its_half_open_breaker(user, http_target):
    probe = http_job(user, f"{http_target.url}/status/200/probe")
    CircuitBreaker.objects.create(host=probe.hosts[0], state=HALF_OPEN, probe_job=probe.id)
    assert run(probe) == Execution.Status.SUCCEEDED
    assert CircuitBreaker.objects.get(host=probe.hosts[0]).state == CLOSED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("at_claim", "after"), [(OPEN, CLOSED), (CLOSED, HALF_OPEN)])
def test_a_breaker_that_turns_half_open_during_a_step_is_closed_by_its_success_only_if_it_was_not_closed_at_the_claim(  # noqa: E501
    user, http_target: HttpTarget, at_claim, after
):
    """A job released before its host's breaker opened, whose request is in flight while the
    breaker turns half-open (its probe released): if the breaker was already open when the job
    was claimed, the job's success closes it, as before; if it was still closed, the job does
    not look, and the breaker stays half-open for its probe's success to close."""
    job = http_job(user, f"{http_target.url}/block/{at_claim}")
    host = job.hosts[0]
    CircuitBreaker.objects.create(host=host, state=at_claim)
    outcome: list[str] = []

    def attempt() -> None:
        try:
            outcome.append(run(job))
        finally:
            connection.close()

    thread = threading.Thread(target=attempt)
    thread.start()
    try:
        wait_for(lambda: http_target.count(f"/block/{at_claim}") == 1, what="the request")
        CircuitBreaker.objects.filter(host=host).update(state=HALF_OPEN)  # its probe went
    finally:
        http_target.release(at_claim)
        thread.join(timeout=30)
    assert outcome == [Execution.Status.SUCCEEDED]
    assert CircuitBreaker.objects.get(host=host).state == after
