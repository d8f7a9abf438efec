from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Job
from tests.conftest import client_for
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def ids(response):
    assert response.status_code == 200, response.content
    return [job["id"] for job in response.json()["results"]]


def test_a_user_sees_only_their_own_jobs(api, user, admin):
    mine = JobFactory(owner=user)
    theirs = JobFactory()
    assert ids(api.get("/api/v1/jobs/")) == [str(mine.id)]
    for response in (
        api.get(f"/api/v1/jobs/{theirs.id}/"),
        api.post(f"/api/v1/jobs/{theirs.id}/cancel/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "JOBS.NOT_FOUND"
    theirs.refresh_from_db()
    assert theirs.status == Job.Status.PENDING  # the refused cancel changed nothing
    assert set(ids(client_for(admin).get("/api/v1/jobs/"))) == {str(mine.id), str(theirs.id)}


def test_filters_by_status_queue_name_and_creation_time(api, user):
    now = timezone.now()
    old = JobFactory(owner=user, name="report", created_at=now - timedelta(days=2))
    running = JobFactory(owner=user, name="sync", status=Job.Status.RUNNING)
    probe = JobFactory(owner=user, name="sync", queue="dispatch-probe", status=Job.Status.FAILED)
    get = lambda query: set(ids(api.get(f"/api/v1/jobs/?{query}")))  # noqa: E731
    assert get("status=running") == {str(running.id)}
    assert get("status=running,failed") == {str(running.id), str(probe.id)}
    assert get("queue=dispatch-probe") == {str(probe.id)}
    assert get("name=sync") == {str(running.id), str(probe.id)}
    assert get("name_contains=REP") == {str(old.id)}
    cut = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert get(f"created_before={cut}") == {str(old.id)}
    assert get(f"created_after={cut}") == {str(running.id), str(probe.id)}


@pytest.mark.parametrize("query", ["status=bogus", "created_after=yesterday"])
def test_an_invalid_filter_is_a_400(api, query):
    response = api.get(f"/api/v1/jobs/?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.VALIDATION_ERROR"


def test_cursor_pagination_walks_every_job_once_newest_first(api, user):
    now = timezone.now()
    jobs = [JobFactory(owner=user, created_at=now - timedelta(seconds=i)) for i in range(7)]
    seen, url = [], "/api/v1/jobs/?page_size=3"
    while url:
        page = api.get(url).json()
        seen += [job["id"] for job in page["results"]]
        url = page["next"]
    assert seen == [str(job.id) for job in jobs]


def test_cursor_pagination_serves_jobs_created_in_the_same_instant_once_each(api, user):
    # Without a tiebreaker, PostgreSQL is free to order rows of one created_at differently for
    # each page's query: with 40 such jobs one came twice and another never.
    jobs = JobFactory.create_batch(40, owner=user)
    Job.objects.filter(id__in=[j.id for j in jobs]).update(created_at=timezone.now())
    seen, url = [], "/api/v1/jobs/?page_size=3"
    while url:
        page = api.get(url).json()
        seen += [job["id"] for job in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(str(job.id) for job in jobs)


def test_an_invalid_cursor_is_a_400(api):
    response = api.get("/api/v1/jobs/?cursor=garbage")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.INVALID_CURSOR"


def test_cancel_of_a_finished_job_is_a_409_and_of_a_cancelled_one_a_no_op(api, user):
    done = JobFactory(owner=user, status=Job.Status.SUCCEEDED)
    response = api.post(f"/api/v1/jobs/{done.id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "JOBS.NOT_CANCELLABLE",
        "message": "the job has already finished (succeeded)",
        "details": {"status": "succeeded"},
    }
    cancelled = JobFactory(owner=user, status=Job.Status.CANCELLED)
    response = api.post(f"/api/v1/jobs/{cancelled.id}/cancel/")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")


def test_listing_costs_one_query_and_loads_only_the_columns_it_shows(api, user):
    """The token is looked up outside the ORM (a prepared statement); the page is one query,
    with no query per job for a deferred column, and without the JSON columns (an input may be
    64 KiB) that a list does not show."""
    JobFactory.create_batch(20, owner=user, input={"blob": "x" * 60_000})
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/jobs/")
    assert len(ids(response)) == 20
    [page] = [q["sql"] for q in queries.captured_queries]
    for column in ("steps", "input", "step_outputs", "result", "last_error"):
        assert f'"jobs_job"."{column}"' not in page
    first = response.json()["results"][0]
    assert (first["owner"], first["status"], first["attempts"]) == (user.username, "pending", 0)
    assert "input" not in first


def test_the_name_filter_reads_its_own_index(admin):
    """At a million jobs the name filter walked the whole creation-time index (60 ms)."""
    Job.objects.bulk_create(
        JobFactory.build(owner=admin, name=f"other-{i % 200}") for i in range(3000)
    )
    JobFactory.create_batch(30, owner=admin, name="nightly")
    with CaptureQueriesContext(connection) as queries:
        assert len(ids(client_for(admin).get("/api/v1/jobs/?name=nightly&queue=default"))) == 30
    [sql] = [q["sql"] for q in queries if q["sql"].startswith('SELECT "jobs_job"')]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "job_name_created" in plan, plan


def test_an_owners_jobs_are_found_through_job_owner_created(admin, user):
    """owner_id has no index of its own, which each job insert paid for: the prefix of
    job_owner_created (owner, -created_at) serves a lookup by owner alone, such as the check that
    refuses to delete a user who owns jobs."""
    Job.objects.bulk_create(JobFactory.build(owner=admin) for _ in range(3000))
    JobFactory.create_batch(30, owner=user)
    with CaptureQueriesContext(connection) as queries, pytest.raises(ProtectedError):
        user.delete()
    [sql] = [
        q["sql"] for q in queries if 'FROM "jobs_job" WHERE "jobs_job"."owner_id" IN' in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs_job'")
        indexes = {name for (name,) in cursor.fetchall()}
    assert "job_owner_created" in plan, plan
    assert not [name for name in indexes if name.startswith("jobs_job_owner_id_")]


def test_a_new_job_answers_without_looking_up_attempts(api, django_assert_max_num_queries):
    steps = [{"type": "log", "params": {"message": "hi"}}]
    # The token lookup and the INSERT + NOTIFY are prepared statements outside the ORM's count;
    # what remains is the savepoint pair around the insert (the test runs in a transaction): no
    # query for the owner or for executions a new job cannot have.
    with django_assert_max_num_queries(2):
        response = api.post("/api/v1/jobs/", {"name": "n", "steps": steps}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["executions"] == []
    assert response.json()["retry_backoff"] == 2.0


def test_filters_by_trace_id_step_type_and_owner(api, user, admin):
    http = JobFactory(owner=user, steps=[{"type": "log"}, {"type": "http", "params": {}}])
    log = JobFactory(owner=user)
    theirs = JobFactory(steps=[{"type": "http", "params": {}}])
    assert ids(api.get(f"/api/v1/jobs/?trace_id={log.trace_id}")) == [str(log.id)]
    assert ids(api.get("/api/v1/jobs/?step_type=http")) == [str(http.id)]
    assert ids(api.get(f"/api/v1/jobs/?owner={theirs.owner.username}")) == []  # not visible
    as_admin = client_for(admin)
    assert ids(as_admin.get(f"/api/v1/jobs/?owner={theirs.owner.username}")) == [str(theirs.id)]
    assert set(ids(as_admin.get("/api/v1/jobs/?step_type=http"))) == {str(http.id), str(theirs.id)}


def test_a_jobs_attempts_are_listed_oldest_first(api, user):
    from executions.models import Execution

    job = JobFactory(owner=user, status=Job.Status.RUNNING, attempts=2)
    for attempt, status in ((2, "running"), (1, "failed")):
        Execution.objects.create(
            job=job, attempt=attempt, status=status, started_at=timezone.now(), worker="w"
        )
    response = api.get(f"/api/v1/jobs/{job.id}/executions/")
    assert response.status_code == 200, response.content
    assert [(e["attempt"], e["status"]) for e in response.json()["results"]] == [
        (1, "failed"),
        (2, "running"),
    ]
    other = JobFactory()
    assert api.get(f"/api/v1/jobs/{other.id}/executions/").status_code == 404


def test_stats_count_the_visible_jobs_and_the_last_hour(api, user):
    now = timezone.now()
    JobFactory(owner=user, status=Job.Status.PENDING, run_at=now - timedelta(seconds=90))
    JobFactory(owner=user, status=Job.Status.PENDING, run_at=now + timedelta(hours=1))  # not due
    JobFactory(owner=user, queue="slow", status=Job.Status.QUEUED, run_at=now)
    for status in ("succeeded", "succeeded", "succeeded", "failed"):
        JobFactory(owner=user, status=status, finished_at=now - timedelta(minutes=5))
    JobFactory(owner=user, status="failed", finished_at=now - timedelta(hours=2))  # before
    JobFactory(status=Job.Status.RUNNING)  # another user's: not counted
    response = api.get("/api/v1/jobs/stats/")
    assert response.status_code == 200, response.content
    stats = response.json()
    assert stats["total"] == 8
    assert stats["by_status"] == {
        "pending": 2, "queued": 1, "running": 0, "retrying": 0,
        "succeeded": 3, "failed": 2, "cancelled": 0,
    }  # fmt: skip
    assert stats["by_queue"]["slow"] == {"queued": 1}
    assert 90 <= stats["oldest_due_age_seconds"] < 120
    assert stats["last_hour"] == {
        "succeeded": 3,
        "failed": 1,
        "cancelled": 0,
        "throughput_per_minute": round(4 / 60, 3),
        "failure_rate": 0.25,
    }
    # The list's filters apply.
    assert api.get("/api/v1/jobs/stats/?queue=slow").json()["total"] == 1
