"""Circuit breakers and rate limits in the release, against PostgreSQL and the tests' Redis:
what the release holds, what it parks and under which name, and how held jobs come back.
The gates' combinations are tests/jobs/test_flow_holds.py's."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import ratelimit
from jobs.models import CircuitBreaker, Hold, Job, RateLimit
from jobs.selectors import job_waiting_for
from jobs.services.dependencies import (
    breaker_close,
    breaker_failure,
    breaker_open,
    breaker_success,
    rate_limit_set,
)
from jobs.services.holds import HELD_BY_SQL, UNPARK_SQL
from tests.jobs.factories import JobFactory
from tests.jobs.test_release import Q, explain, release, statuses, waiting

pytestmark = pytest.mark.django_db
HOST = "down.example:8443"


def parked(jobs: list[Job]) -> list[tuple[str, str]]:
    found = {j.id: (j.hold, j.held_by) for j in Job.objects.filter(id__in=[j.id for j in jobs])}
    return [found[j.id] for j in jobs]


@pytest.fixture
def limit_name():
    name = f"api-{uuid.uuid4().hex[:8]}"
    yield name
    ratelimit.forget(name)


def tripped(settings) -> CircuitBreaker:
    settings.JOBPLATFORM_BREAKER_FAILURES = 2
    breaker_failure(host=HOST)
    return breaker_failure(host=HOST)


def test_an_open_breaker_holds_its_hosts_jobs_until_a_probe_succeeds(user, settings):
    assert tripped(settings).state == CircuitBreaker.State.OPEN
    held = waiting(user, 3, hosts=[HOST])
    other = waiting(user, 1, seconds_ago=1, hosts=["up.example"])
    assert [r.id for r in release().jobs] == [other[0].id]
    assert statuses(held) == ["pending"] * 3
    assert parked(held) == [(Hold.CIRCUIT_BREAKER, HOST)] * 3
    assert [r["reason"] for r in job_waiting_for(job=Job.objects.get(id=held[0].id))] == [
        "circuit_breaker"
    ]
    assert release().jobs == []  # still within the cooldown
    CircuitBreaker.objects.filter(host=HOST).update(retry_at=timezone.now())  # cooldown over
    [probe] = release().jobs
    assert probe.id == held[0].id  # the oldest goes first
    breaker = CircuitBreaker.objects.get(host=HOST)
    assert (breaker.state, breaker.probe_job) == (CircuitBreaker.State.HALF_OPEN, probe.id)
    assert release().jobs == []  # one probe at a time
    assert breaker_success(host=HOST)
    assert {r.id for r in release().jobs} == {held[1].id, held[2].id}
    assert Job.objects.filter(id__in=[j.id for j in held], attempts=0).count() == 3


def test_a_retry_waits_for_an_open_breaker_without_spending_its_budget(user, settings):
    tripped(settings)
    retry = JobFactory(
        owner=user,
        queue="dispatch-probe",
        status=Job.Status.RETRYING,
        attempts=1,
        hosts=[HOST],
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )
    assert release().jobs == []
    retry.refresh_from_db()
    assert (retry.status, retry.attempts, retry.hold) == (
        Job.Status.RETRYING,
        1,
        Hold.CIRCUIT_BREAKER,
    )
    breaker_close(host=HOST, actor=None)  # an operator closes it: the job goes
    assert [r.id for r in release().jobs] == [retry.id]


def test_a_breaker_opened_by_hand_sends_no_probe(user):
    breaker_open(host=HOST, actor=None)
    held = waiting(user, 2, hosts=[HOST])
    CircuitBreaker.objects.filter(host=HOST).update(opened_at=timezone.now() - timedelta(days=1))
    assert release().jobs == [] and release().jobs == []
    assert statuses(held) == ["pending", "pending"]
    breaker_close(host=HOST, actor=None)
    assert len(release().jobs) == 2


def test_a_rate_limit_releases_its_burst_and_the_rest_as_tokens_come(user, limit_name):
    rate_limit_set(name=limit_name, rate=0.001, burst=2, actor=None)
    limited = waiting(user, 5, rate_limit=limit_name)
    free = waiting(user, 1, seconds_ago=1)
    assert {r.id for r in release().jobs} == {limited[0].id, limited[1].id, free[0].id}
    assert parked(limited[2:]) == [(Hold.RATE_LIMIT, limit_name)] * 3
    [reason] = job_waiting_for(job=Job.objects.get(id=limited[2].id))
    assert (reason["reason"], reason["limit"], reason["burst"]) == ("rate_limit", limit_name, 2)
    assert release().jobs == []
    ratelimit.take([ratelimit.Want(limit_name, 0.001, 2, -1)])  # one token comes
    assert [r.id for r in release().jobs] == [limited[2].id]
    assert Job.objects.filter(id__in=[j.id for j in limited], attempts=0).count() == 5


def test_an_http_hosts_limit_applies_to_the_jobs_calling_it(user, limit_name):
    host = f"{limit_name}.example"
    rate_limit_set(name=host, rate=0.001, burst=1, actor=None)
    try:
        calls = waiting(user, 3, hosts=[host])
        assert [r.id for r in release().jobs] == [calls[0].id]
        assert parked(calls[1:]) == [(Hold.RATE_LIMIT, host)] * 2
        RateLimit.objects.filter(name=host).delete()  # deleted: its jobs are limited no more
        assert len(release().jobs) == 2
    finally:
        ratelimit.forget(host)


def test_jobs_without_limits_never_ask_redis_and_limited_ones_wait_while_it_is_away(
    user, limit_name, settings
):
    rate_limit_set(name=limit_name, rate=100, burst=100, actor=None)
    limited = waiting(user, 2, rate_limit=limit_name)
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:9/0"}
    }
    plain = waiting(user, 2, seconds_ago=1)
    assert {r.id for r in release().jobs} == {j.id for j in plain}
    assert parked(limited) == [(Hold.RATE_LIMIT, limit_name)] * 2


def test_the_holds_statements_read_through_job_held_whatever_the_statistics(user):
    """As the release's own statements (tests/jobs/test_release.py): statistics taken on an
    emptied table, then thousands of finished jobs; the walk over the names that hold parked
    jobs and the unparking read job_held, never the table."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    Job.objects.bulk_create(
        JobFactory.build(owner=user, queue=Q, status=Job.Status.SUCCEEDED, hosts=[HOST])
        for _ in range(3000)
    )
    waiting(user, 20, hosts=[HOST], hold=Hold.CIRCUIT_BREAKER, held_by=HOST)
    for reason in (Hold.CIRCUIT_BREAKER, Hold.RATE_LIMIT):
        for plan in (
            explain(HELD_BY_SQL[reason], {}),
            explain(UNPARK_SQL[reason], {"names": [HOST], "counts": [5]}),
        ):
            assert "Seq Scan on jobs_job" not in plan and "job_held" in plan, plan
