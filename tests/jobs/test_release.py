"""The release against PostgreSQL, from forged tables: what it takes, what it leaves, and why.

The combinations of fair share, priority and kinds are tests/jobs/test_flow.py's; these check
that the release reads the right jobs and writes its decisions, with the index plans that keep
it cheap.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.db import OperationalError, connection
from django.utils import timezone
from psycopg import pq

from jobs.models import Hold, Job, OwnerQuota, Queue
from jobs.services import job_release_due
from jobs.services.queues import queue_pause, queue_resume
from jobs.services.release import (
    _CANDIDATES_SQL,
    _LANES_SQL,
    _STATE_SQL,
    _UNPARK_KEYS_SQL,
)
from tests.factories import UserFactory
from tests.jobs.factories import JobFactory
from tests.support import wait_for

Q = "dispatch-probe"  # no dispatcher or worker of the session serves it
pytestmark = pytest.mark.django_db


def waiting(owner, n: int, *, seconds_ago: float = 60, **fields) -> list:
    """``n`` due jobs of ``owner`` in the probe queue, the first the oldest."""
    now = timezone.now()
    return [
        JobFactory(owner=owner, queue=Q, run_at=now - timedelta(seconds=seconds_ago - i), **fields)
        for i in range(n)
    ]


def release(limit: int = 500):
    return job_release_due(limit=limit, queues=[Q])


def statuses(jobs: list[Job]) -> list[str]:
    found = dict(Job.objects.filter(id__in=[j.id for j in jobs]).values_list("id", "status"))
    return [found[j.id] for j in jobs]


def in_flight() -> int:
    return Job.objects.filter(queue=Q, status__in=["queued", "running"]).count()


@pytest.fixture
def cap(settings):
    """A cap on the probe queue of ``n`` jobs in flight."""

    def set_cap(n: int | None) -> None:
        Queue.objects.update_or_create(name=Q, defaults={"max_in_flight": n})

    return set_cap


def test_a_queues_cap_is_never_exceeded_and_room_is_refilled_as_jobs_finish(user, cap):
    cap(3)
    jobs = waiting(user, 10)
    first = release()
    assert [r.id for r in first.jobs] == [j.id for j in jobs[:3]]
    assert first.waiting and not first.more
    assert release().jobs == [] and in_flight() == 3
    Job.objects.filter(id=jobs[0].id).update(status=Job.Status.RUNNING)
    assert release().jobs == []  # running still counts
    Job.objects.filter(id=jobs[0].id).update(status=Job.Status.SUCCEEDED)
    assert [r.id for r in release().jobs] == [jobs[3].id]
    assert in_flight() == 3


def test_the_broker_holds_at_most_max_queued_of_a_queue(user, settings):
    settings.JOBPLATFORM_DISPATCH_MAX_QUEUED = 4
    jobs = waiting(user, 10)
    Job.objects.filter(id__in=[j.id for j in jobs[:2]]).update(status=Job.Status.RUNNING)
    assert len(release().jobs) == 4  # running jobs are not in the broker any more
    assert release().jobs == []


def test_a_client_with_one_job_is_served_in_the_next_release_behind_any_backlog(user, cap):
    cap(20)
    other = UserFactory()
    backlog = waiting(user, 200, seconds_ago=600)
    first = release()
    assert len(first.jobs) == 20
    [mine] = waiting(other, 1, seconds_ago=1)  # due last of all
    Job.objects.filter(id=first.jobs[0].id).update(status=Job.Status.SUCCEEDED)
    assert [r.id for r in release().jobs] == [mine.id]
    assert statuses(backlog).count("pending") == 180


def test_owners_share_a_release_by_weight(user, settings):
    settings.JOBPLATFORM_DISPATCH_MAX_QUEUED = 30
    heavy, light = UserFactory(), UserFactory()
    OwnerQuota.objects.create(owner=heavy, weight=2)
    for owner in (user, heavy, light):
        waiting(owner, 40)
    assert sum(len(release().jobs) for _ in range(3)) == 30
    released = Counter(
        Job.objects.filter(status=Job.Status.QUEUED).values_list("owner_id", flat=True)
    )
    assert released[heavy.id] == 15
    assert sorted([released[user.id], released[light.id]]) == [7, 8]


def test_a_high_priority_job_overtakes_its_owners_backlog(user, cap):
    cap(1)
    waiting(user, 50, seconds_ago=600, priority=0)
    [urgent] = waiting(user, 1, seconds_ago=1, priority=9)
    assert [r.id for r in release().jobs] == [urgent.id]


def test_due_retries_are_released_within_the_same_limits(user, cap):
    cap(2)
    now = timezone.now()
    retries = [
        JobFactory(
            owner=user,
            queue=Q,
            status=Job.Status.RETRYING,
            attempts=1,
            next_attempt_at=now - timedelta(seconds=30 - i),
        )
        for i in range(5)
    ]
    new = waiting(user, 5, seconds_ago=10)
    later = JobFactory(
        owner=user,
        queue=Q,
        status=Job.Status.RETRYING,
        attempts=1,
        next_attempt_at=now + timedelta(hours=1),
    )
    result = release()
    # One of each kind: a retry backlog does not starve new jobs.
    assert [r.id for r in result.jobs] == [retries[0].id, new[0].id]
    assert [r.attempt for r in result.jobs] == [2, 1]
    Job.objects.filter(queue=Q, status=Job.Status.QUEUED).update(status=Job.Status.SUCCEEDED)
    Job.objects.filter(id__in=[j.id for j in new]).update(status=Job.Status.SUCCEEDED)
    Job.objects.filter(id__in=[j.id for j in retries[1:]]).update(status=Job.Status.SUCCEEDED)
    result = release()
    assert result.jobs == [] and not result.waiting
    assert abs((result.next_due - later.next_attempt_at).total_seconds()) < 0.001


def test_a_paused_queue_releases_nothing_and_resuming_releases_it(user):
    jobs = waiting(user, 3)
    queue_pause(name=Q, actor=None)
    result = release()
    assert result.jobs == [] and not result.waiting  # a resume wakes the dispatchers itself
    assert statuses(jobs) == ["pending"] * 3
    queue_resume(name=Q, actor=None)
    assert len(release().jobs) == 3


def test_pausing_hands_queued_jobs_back_and_lets_running_ones_finish(user):
    queued, running = waiting(user, 2)
    Job.objects.filter(id=queued.id).update(status=Job.Status.QUEUED, queued_at=timezone.now())
    Job.objects.filter(id=running.id).update(status=Job.Status.RUNNING, attempts=1)
    queue_pause(name=Q, actor=None)
    assert statuses([queued, running]) == ["pending", "running"]
    queued.refresh_from_db()
    assert (queued.queued_at, queued.attempts) == (None, 0)  # no attempt spent


def test_a_concurrency_key_runs_at_most_max_concurrency_and_parks_the_rest(user):
    keyed = waiting(user, 5, concurrency_key="customer:42", max_concurrency=2)
    free = waiting(user, 1, seconds_ago=1)  # behind the keyed backlog in its owner's lane
    first = release()
    assert {r.id for r in first.jobs} == {keyed[0].id, keyed[1].id, free[0].id}
    assert statuses(keyed[2:]) == ["pending"] * 3
    assert set(
        Job.objects.filter(id__in=[j.id for j in keyed[2:]]).values_list("hold", flat=True)
    ) == {Hold.CONCURRENCY_KEY}
    assert first.waiting
    assert release().jobs == []
    Job.objects.filter(id=keyed[0].id).update(status=Job.Status.SUCCEEDED)
    assert [r.id for r in release().jobs] == [keyed[2].id]  # unparked, oldest first
    Job.objects.filter(id__in=[keyed[1].id, keyed[2].id]).update(status=Job.Status.FAILED)
    assert {r.id for r in release().jobs} == {keyed[3].id, keyed[4].id}
    assert not release().waiting


def test_another_owners_same_key_is_another_key(user):
    other = UserFactory()
    JobFactory(owner=user, queue=Q, status=Job.Status.RUNNING, concurrency_key="k", attempts=1)
    [theirs] = waiting(other, 1, concurrency_key="k")
    [mine] = waiting(user, 1, concurrency_key="k")
    assert [r.id for r in release().jobs] == [theirs.id]
    mine.refresh_from_db()
    assert mine.hold == Hold.CONCURRENCY_KEY


def test_a_parked_key_does_not_hold_up_its_owners_other_jobs(user, cap):
    cap(2)
    keyed = waiting(user, 50, seconds_ago=600, concurrency_key="k", max_concurrency=1)
    [free] = waiting(user, 1, seconds_ago=1)
    assert [r.id for r in release().jobs] == [keyed[0].id]  # the next one is parked with the rest
    assert Job.objects.filter(hold=Hold.CONCURRENCY_KEY).count() == 49
    assert [r.id for r in release().jobs] == [free.id]


def test_a_retry_waits_for_its_key_like_any_job(user):
    JobFactory(owner=user, queue=Q, status=Job.Status.RUNNING, concurrency_key="k", attempts=1)
    retry = JobFactory(
        owner=user,
        queue=Q,
        status=Job.Status.RETRYING,
        attempts=1,
        concurrency_key="k",
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )
    assert release().jobs == []
    retry.refresh_from_db()
    assert (retry.status, retry.hold, retry.attempts) == (
        Job.Status.RETRYING,
        Hold.CONCURRENCY_KEY,
        1,
    )


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_releasing_at_once_never_exceed_a_cap(user):
    Queue.objects.update_or_create(name=Q, defaults={"max_in_flight": 5})
    waiting(user, 60)
    seen: list[int] = []
    stop = threading.Event()

    def dispatcher() -> None:
        try:
            while not stop.is_set():
                release(limit=3)
        finally:
            connection.close()

    def worker() -> None:
        """Record what is in flight; finish a job once the cap is reached (or none waits)."""
        try:
            while not stop.is_set():
                seen.append(in_flight())
                if seen[-1] < 5 and Job.objects.filter(queue=Q, status="pending").exists():
                    continue
                first = Job.objects.filter(queue=Q, status=Job.Status.QUEUED).first()
                if first is not None:
                    Job.objects.filter(id=first.id).update(status=Job.Status.SUCCEEDED)
        finally:
            connection.close()

    threads = [threading.Thread(target=f) for f in (dispatcher, dispatcher, worker)]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: Job.objects.filter(queue=Q, status=Job.Status.SUCCEEDED).count() == 60,
            what="every job to be released and finished",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert max(seen) == 5


def round_trips(action) -> tuple[object, int]:
    """``action()``'s result, and how many times the client sent PostgreSQL something and
    waited for its answer, read from libpq's trace of the connection (F: a message the client
    sent, B: one it received)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            result = action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        sides = [line.split("\t", 1)[0] for line in trace.read().splitlines()]
    turns = [side for i, side in enumerate(sides) if side in "FB" and sides[i - 1 : i] != [side]]
    return result, "".join(turns).count("FB")


@pytest.mark.django_db(transaction=True)
def test_an_idle_release_of_one_job_is_three_round_trips(user):
    """The release's statements are pipelined: BEGIN, the locks, the lanes and the state go
    together, then the candidates, then the mark with COMMIT (seven round trips unpipelined,
    each on the path from a submission to its start)."""
    release()  # the connection's statements prepared
    [job] = waiting(user, 1)
    done, trips = round_trips(release)
    assert [j.id for j in done.jobs] == [job.id]
    assert trips == 3
    assert statuses([job]) == [Job.Status.QUEUED]  # committed


@pytest.mark.django_db(transaction=True)
def test_a_release_that_cannot_lock_gives_way_and_the_next_one_releases(user):
    """A release waits at most its lock_timeout for its table locks (a TRUNCATE or an ALTER
    holding one would otherwise deadlock with it); the failed one's transaction is ended, so
    the dispatcher's next release on the same connection works."""
    [job] = waiting(user, 1)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("LOCK TABLE jobs_queue IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(OperationalError, match="lock timeout"):
            release()
        other.rollback()
    assert statuses([job]) == [Job.Status.PENDING]
    assert [j.id for j in release().jobs] == [job.id]


def explain(sql: str, params: dict) -> str:
    """The plans of ``sql``: planned for ``params``, and generic (as the release's prepared
    statements run: ``plan_cache_mode = force_generic_plan``)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        custom = "\n".join(row[0] for row in cursor.fetchall())
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
        cursor.execute(f"PREPARE probe AS {numbered}")
        try:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            values = ", ".join(["%s"] * len(names))
            cursor.execute(
                f"EXPLAIN EXECUTE probe{f'({values})' if names else ''}",
                [params[name] for name in names],
            )
            generic = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET plan_cache_mode")
            cursor.execute("DEALLOCATE probe")
    return custom + "\n--- generic plan:\n" + generic


def test_every_release_statement_reads_through_its_partial_index_whatever_the_statistics(user):
    """Statistics taken on an emptied table, then a table of finished jobs: no statement of the
    release scans the table, so its cost does not grow with the jobs that finished."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    Job.objects.bulk_create(
        JobFactory.build(owner=user, queue=Q, status=Job.Status.SUCCEEDED) for _ in range(3000)
    )
    waiting(user, 20)
    now = timezone.now()
    plans = {
        "state": explain(_STATE_SQL.format(parked=""), {"queues": [Q]}),
        "lanes": explain(_LANES_SQL, {"queues": [Q]}),
        "candidates": explain(
            _CANDIDATES_SQL,
            {
                "queue": [Q],
                "owner": [user.id],
                "priority": [5],
                "status": ["pending"],
                "quota": [10],
                "now": now,
            },
        ),
        "unpark": explain(_UNPARK_KEYS_SQL, {"now": now}),
    }
    for kind in (0, 1):  # planned for the parameters, and generic
        part = {name: plan.split("--- generic plan:")[kind] for name, plan in plans.items()}
        for name, plan in part.items():
            assert "Seq Scan on jobs_job" not in plan, (name, plan)
        # The jobs in flight: through job_in_flight, or generically through job_status_created
        # on the same two statuses (as many entries either way: jobs queued or running).
        assert ("job_in_flight" if kind == 0 else "Index Scan") in part["state"], part["state"]
        assert "job_ready" in part["lanes"] and "job_ready" in part["candidates"], part
        assert "job_key_waiting" in part["unpark"], part["unpark"]
