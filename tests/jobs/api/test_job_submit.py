from __future__ import annotations

import json

import pytest
from django.test import override_settings

from jobs.models import Job
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"


def submit(api, **body):
    body.setdefault("name", "t")
    body.setdefault("steps", [{"type": "log", "params": {"message": "hello"}}])
    return api.post(URL, body, format="json")


def test_a_valid_submission_is_stored_pending_and_answered_with_links(api, user):
    response = submit(
        api,
        name="nightly",
        steps=[
            {"type": "http", "params": {"url": "https://example.com/", "method": "GET"}},
            {"type": "compute", "params": {"size": 1000}},
        ],
        input={"a": 1},
        queue="default",
        priority=7,
        max_retries=4,
        retry_backoff=1.5,
        retry_backoff_max=60,
        timeout=120,
        run_at=None,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(id=body["id"])
    assert (job.owner, job.status, job.priority, job.max_retries) == (user, "pending", 7, 4)
    assert (job.retry_backoff, job.retry_backoff_max, job.timeout) == (1.5, 60, 120)
    assert body["status"] == "pending"
    assert body["links"]["self"].endswith(f"/api/v1/jobs/{job.id}/")
    assert body["links"]["cancel"].endswith(f"/api/v1/jobs/{job.id}/cancel/")
    assert body["executions"] == []
    assert response["Location"] == f"/api/v1/jobs/{job.id}/"


def test_defaults_apply_when_fields_are_left_out(api):
    body = submit(api).json()
    assert (body["queue"], body["priority"], body["max_retries"], body["timeout"]) == (
        "default",
        5,
        3,
        3600,
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"steps": [{"type": "nope"}]}, "JOBS.UNKNOWN_STEP_TYPE"),
        ({"steps": [{"type": "sleep", "params": {"seconds": -1}}]}, "JOBS.INVALID_STEP_PARAMS"),
        ({"steps": [{"type": "sleep", "params": {}}]}, "JOBS.INVALID_STEP_PARAMS"),
        ({"steps": [{"type": "http", "params": {"url": "ftp://x"}}]}, "JOBS.INVALID_STEP_PARAMS"),
        (
            {"steps": [{"type": "log", "params": {"message": "x", "extra": 1}}]},
            "JOBS.INVALID_STEP_PARAMS",
        ),
        ({"steps": ["log"]}, "JOBS.INVALID_STEP"),
        ({"steps": [{"type": "log", "parms": {}}]}, "JOBS.INVALID_STEP"),
        ({"steps": []}, "JOBS.NO_STEPS"),
        ({"steps": [{"type": "log", "params": {"message": "x"}}] * 51}, "JOBS.TOO_MANY_STEPS"),
        ({"input": {"blob": "x" * 70000}}, "JOBS.INPUT_TOO_LARGE"),
        ({"max_retries": -1}, "JOBS.INVALID_RETRY_POLICY"),
        ({"max_retries": 1000}, "JOBS.INVALID_RETRY_POLICY"),
        ({"retry_backoff": -2}, "JOBS.INVALID_RETRY_POLICY"),
        ({"retry_backoff": 10, "retry_backoff_max": 5}, "JOBS.INVALID_RETRY_POLICY"),
        ({"timeout": 0}, "JOBS.INVALID_TIMEOUT"),
        ({"timeout": 10**6}, "JOBS.INVALID_TIMEOUT"),
        ({"priority": 10}, "JOBS.INVALID_PRIORITY"),
        ({"queue": "nowhere"}, "JOBS.UNKNOWN_QUEUE"),
        ({"run_at": "2030-01-01T10:00:00"}, "JOBS.NAIVE_RUN_AT"),
        ({"run_at": "next tuesday"}, "API.VALIDATION_ERROR"),
        ({"max_retries": "many"}, "API.VALIDATION_ERROR"),
        ({"name": ""}, "API.VALIDATION_ERROR"),
        ({"max_retry": 3}, "API.VALIDATION_ERROR"),
    ],
)
def test_invalid_submissions_are_rejected_with_a_namespaced_code(api, body, code):
    response = submit(api, **body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert not Job.objects.exists()


def test_unknown_step_type_lists_the_known_ones(api):
    details = submit(api, steps=[{"type": "nope"}]).json()["error"]["details"]
    assert {"sleep", "log", "compute", "http", "fail", "reverse"} <= set(details["known"])


def test_a_malformed_body_is_a_400_not_a_500(api):
    response = api.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.MALFORMED_REQUEST"
    response = api.post(URL, json.dumps([1, 2]), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.VALIDATION_ERROR"


def test_an_unauthenticated_request_is_refused(client):
    response = client.post(URL, {"name": "x", "steps": []}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH.NOT_AUTHENTICATED"


def test_a_wrong_token_is_refused(client):
    response = client.get(URL, HTTP_AUTHORIZATION="Token nope")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH.INVALID_CREDENTIALS"


@override_settings(JOBPLATFORM_MAX_STEPS=2)
def test_the_step_limit_comes_from_settings(api):
    steps = [{"type": "log", "params": {"message": "x"}}] * 3
    assert submit(api, steps=steps).json()["error"]["details"] == {"count": 3, "limit": 2}


def test_step_types_are_listed_with_their_schemas(api):
    response = api.get("/api/v1/steps/")
    assert response.status_code == 200
    steps = {s["name"]: s for s in response.json()["results"]}
    assert {"sleep", "log", "compute", "http", "fail", "reverse"} <= set(steps)
    assert steps["http"]["params_schema"]["required"] == ["url"]
    assert steps["reverse"]["description"].startswith("Reverse a text")


def test_the_same_idempotency_key_and_body_return_the_original_job(api):
    first = submit(api, name="once", idempotency_key="k-1")
    body = {"name": "once", "steps": [{"type": "log", "params": {"message": "hello"}}]}
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_409(api):
    first = submit(api, name="once", idempotency_key="k-2")
    other = submit(api, name="twice", idempotency_key="k-2")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "JOBS.IDEMPOTENCY_KEY_REUSED"
    assert other.json()["error"]["details"] == {"job_id": first.json()["id"]}


def test_idempotency_keys_are_per_owner(api, admin):
    from tests.conftest import client_for

    mine = submit(api, idempotency_key="shared").json()["id"]
    theirs = submit(client_for(admin), idempotency_key="shared").json()["id"]
    assert mine != theirs


def test_an_expired_idempotency_key_makes_a_new_job(api):
    from datetime import timedelta

    from django.utils import timezone

    old = submit(api, idempotency_key="k-3").json()["id"]
    Job.objects.filter(id=old).update(created_at=timezone.now() - timedelta(days=2))
    new = submit(api, idempotency_key="k-3")
    assert new.status_code == 201 and new.json()["id"] != old


def test_header_and_field_keys_must_agree(api):
    response = api.post(
        URL,
        {
            "name": "x",
            "steps": [{"type": "log", "params": {"message": "x"}}],
            "idempotency_key": "a",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="b",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "JOBS.IDEMPOTENCY_KEY_MISMATCH"


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_with_one_key_make_one_job(user):
    import threading

    from django.db import connection

    from tests.conftest import client_for

    results = []

    def post():
        try:
            results.append(submit(client_for(user), idempotency_key="race").json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert Job.objects.count() == 1


@pytest.mark.parametrize("timeout", [0, -1, "soon", True])
def test_a_bad_step_timeout_is_rejected(api, timeout):
    response = submit(api, steps=[{"type": "log", "params": {"message": "x"}, "timeout": timeout}])
    assert response.json()["error"]["code"] == "JOBS.INVALID_STEP"


def test_a_bulk_submission_stores_every_job_in_one_round(api, user, django_assert_max_num_queries):
    jobs = [
        {"name": f"b{i}", "steps": [{"type": "sleep", "params": {"seconds": 0}}]}
        for i in range(300)
    ]
    with django_assert_max_num_queries(8):  # token, savepoint, one INSERT, NOTIFY: not one per job
        response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["count"] == 300 and len(set(body["ids"])) == 300
    assert Job.objects.filter(owner=user, status="pending").count() == 300


@pytest.mark.parametrize(
    ("jobs", "code", "index"),
    [
        ([{"name": "ok", "steps": [{"type": "log", "params": {"message": "x"}}]},
          {"name": "bad", "steps": [{"type": "nope"}]}], "JOBS.UNKNOWN_STEP_TYPE", 1),
        ([], "JOBS.INVALID_BULK_SIZE", None),
        ([{"name": "x", "steps": [{"type": "log", "params": {"message": "x"}}]}] * 1001,
         "JOBS.INVALID_BULK_SIZE", None),
        ([{"steps": []}], "API.VALIDATION_ERROR", None),
    ],
)  # fmt: skip
def test_a_bulk_submission_with_one_bad_job_stores_none(api, jobs, code, index):
    response = api.post("/api/v1/jobs/bulk/", {"jobs": jobs}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    if index is not None:
        assert error["details"]["job_index"] == index
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_submission_commits_the_row_and_the_wake_up_in_one_prepared_statement(api, user):
    """Outside a transaction the INSERT and pg_notify commit on their own, together: another
    session sees the row and the dispatchers' channel fires, and the response is the stored row."""
    import psycopg

    from jobplatform.api.render import api_datetime
    from jobs.services.common import DISPATCH_CHANNEL
    from tests.conftest import database_url
    from tests.support import executions_of_prepared

    submit(api)  # this connection prepares the statement, if it had not yet
    before = executions_of_prepared("WITH new AS (INSERT INTO jobs_job")
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute(f"LISTEN {DISPATCH_CHANNEL}")
        body = submit(api, name="seen", input={"n": 1}).json()
        notices = [n.channel for n in other.notifies(timeout=5, stop_after=1)]
        [row] = other.execute(
            "SELECT name, input, trace_id, created_at FROM jobs_job WHERE id = %s",
            [body["id"]],
        ).fetchall()
    assert notices == [DISPATCH_CHANNEL]
    # (Its status may have moved on: a session dispatcher and worker may serve the queue.)
    assert (body["status"], row[:3]) == ("pending", ("seen", {"n": 1}, body["trace_id"]))
    assert api_datetime(row[3]) == body["created_at"]
    assert executions_of_prepared("WITH new AS (INSERT INTO jobs_job") == before + 1


BULK = "/api/v1/jobs/bulk/"


def bulk(api, names, **extra):
    jobs = [{"name": n, "steps": [{"type": "log", "params": {"message": n}}]} for n in names]
    return api.post(BULK, {"jobs": jobs}, format="json", **extra)


def test_a_bulk_submission_with_an_idempotency_key_is_made_once(api, user):
    first = bulk(api, ["a", "b"], HTTP_IDEMPOTENCY_KEY="batch-1")
    assert first.status_code == 201, first.content
    again = bulk(api, ["a", "b"], HTTP_IDEMPOTENCY_KEY="batch-1")
    assert again.status_code == 200
    assert again.json() == first.json()  # the same ids, in the same order
    assert Job.objects.filter(owner=user).count() == 2
    # The key in the body works alike; a different batch with the key is refused.
    body = {"jobs": [{"name": "a", "steps": [{"type": "log", "params": {"message": "a"}}]}]}
    other = api.post(BULK, {**body, "idempotency_key": "batch-1"}, format="json")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "JOBS.IDEMPOTENCY_KEY_REUSED"
    assert other.json()["error"]["details"]["count"] == 2
    assert Job.objects.filter(owner=user).count() == 2
    # A key per job inside the batch is refused: the batch has one.
    per_job = {"jobs": [{**body["jobs"][0], "idempotency_key": "x"}]}
    assert api.post(BULK, per_job, format="json").status_code == 400


def test_an_expired_bulk_key_makes_new_jobs(api, user):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import BulkSubmission

    old = bulk(api, ["a"], HTTP_IDEMPOTENCY_KEY="batch-2").json()["ids"]
    BulkSubmission.objects.update(created_at=timezone.now() - timedelta(days=2))
    new = bulk(api, ["a"], HTTP_IDEMPOTENCY_KEY="batch-2")
    assert new.status_code == 201 and new.json()["ids"] != old
    assert BulkSubmission.objects.count() == 1  # the expired record went


def test_a_keyed_bulk_refused_by_admission_stores_nothing_and_its_repeat_is_admitted_anew(
    api, user, settings
):
    from jobs.models import BulkSubmission

    settings.JOBPLATFORM_ADMISSION_RECOUNT = 0  # count anew for every submission
    settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 2
    JobFactory(owner=user)
    refused = bulk(api, ["a", "b"], HTTP_IDEMPOTENCY_KEY="batch-3")
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "JOBS.TOO_MANY_UNFINISHED"
    assert refused["Retry-After"]
    assert not BulkSubmission.objects.exists()  # the key is not taken by a batch never made
    assert Job.objects.filter(owner=user).count() == 1
    # Room again: the same batch with the key is made (201), and its repeat answered (200) even
    # though the owner is now at its cap.
    Job.objects.filter(owner=user).update(status=Job.Status.SUCCEEDED)
    made = bulk(api, ["a", "b"], HTTP_IDEMPOTENCY_KEY="batch-3")
    assert made.status_code == 201, made.content
    again = bulk(api, ["a", "b"], HTTP_IDEMPOTENCY_KEY="batch-3")
    assert (again.status_code, again.json()) == (200, made.json())


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_submissions_with_one_key_make_the_jobs_once(user):
    import threading

    from django.db import connection

    from tests.conftest import client_for

    results = []

    def post():
        try:
            response = bulk(client_for(user), ["x", "y", "z"], HTTP_IDEMPOTENCY_KEY="bulk-race")
            results.append(tuple(response.json()["ids"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert Job.objects.count() == 3
