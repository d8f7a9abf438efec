from __future__ import annotations

import json

import pytest
from django.test import override_settings

from jobs.models import Job

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
