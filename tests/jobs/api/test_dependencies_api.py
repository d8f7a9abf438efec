"""Rate limits and circuit breakers through the REST API: set, read, open, close, refuse."""

from __future__ import annotations

import uuid

import pytest

from jobplatform.models import AuditEvent
from jobs import ratelimit
from jobs.models import CircuitBreaker
from jobs.services.dependencies import breaker_failure
from tests.conftest import client_for
from tests.support import job_detail, submit_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(admin):
    return client_for(admin)


@pytest.fixture
def name():
    limit = f"api-{uuid.uuid4().hex[:8]}.example"
    yield limit
    ratelimit.forget(limit)


def test_an_admin_sets_a_limit_everyone_reads_it_with_its_bucket(admin_api, api, name):
    response = admin_api.put(
        f"/api/v1/rate-limits/{name}/", {"rate": 10, "burst": 20}, format="json"
    )
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in ("name", "rate", "burst", "tokens", "held")} == {
        "name": name,
        "rate": 10.0,
        "burst": 20,
        "tokens": 20,
        "held": 0,
    }
    listed = api.get("/api/v1/rate-limits/").json()["results"]
    assert [r["name"] for r in listed if r["name"] == name] == [name]
    changed = admin_api.put(f"/api/v1/rate-limits/{name}/", {"rate": 0.5}, format="json").json()
    assert (changed["rate"], changed["burst"]) == (0.5, 1)  # default burst: a second's worth, >= 1
    assert admin_api.delete(f"/api/v1/rate-limits/{name}/").status_code == 204
    gone = api.get(f"/api/v1/rate-limits/{name}/")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "LIMITS.NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"rate": 0}, 400, "LIMITS.INVALID_RATE"),
        ({"rate": -1}, 400, "LIMITS.INVALID_RATE"),
        ({"rate": 5, "burst": 0}, 400, "LIMITS.INVALID_BURST"),
        ({"rate": "5"}, 400, "API.VALIDATION_ERROR"),
        ({"rate": True}, 400, "API.VALIDATION_ERROR"),
        ({"burst": 5}, 400, "API.VALIDATION_ERROR"),
        ({"rate": 5, "other": 1}, 400, "API.VALIDATION_ERROR"),
        ([1], 400, "API.VALIDATION_ERROR"),
    ],
)
def test_a_bad_limit_is_refused_with_its_code(admin_api, name, body, status, code):
    response = admin_api.put(f"/api/v1/rate-limits/{name}/", body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_a_job_names_its_limit_and_shows_its_hosts(api):
    steps = [
        {"type": "http", "params": {"url": "https://API.example.com/a"}},
        {"type": "http", "params": {"url": "http://127.0.0.1:8080/b"}},
        {"type": "http", "params": {"url": "https://api.example.com:443/c"}},
    ]
    job_id = submit_job(api, steps, rate_limit="partner-api", run_at="2099-01-01T00:00:00Z")
    detail = job_detail(api, job_id)
    assert detail["rate_limit"] == "partner-api"
    assert detail["hosts"] == ["api.example.com", "127.0.0.1:8080"]
    response = api.post(
        "/api/v1/jobs/", {"name": "x", "steps": steps, "rate_limit": ""}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "JOBS.INVALID_RATE_LIMIT",
    )


def test_a_breaker_is_seen_opened_and_closed_through_the_api(user, api, settings):
    operator = client_for(user)
    host = "flaky.example:8443"
    closed = api.get(f"/api/v1/breakers/{host}/").json()
    assert (closed["state"], closed["failures"]) == ("closed", 0)  # never failed: no row
    settings.JOBPLATFORM_BREAKER_FAILURES = 2
    breaker_failure(host=host)
    breaker_failure(host=host)
    listed = {b["host"]: b for b in api.get("/api/v1/breakers/").json()["results"]}
    assert (listed[host]["state"], listed[host]["failures"]) == ("open", 2)
    assert listed[host]["retry_at"] is not None and not listed[host]["manual"]
    closed = operator.post(f"/api/v1/breakers/{host}/close/").json()
    assert (closed["state"], closed["failures"]) == ("closed", 0)
    opened = operator.post(f"/api/v1/breakers/{host}/open/").json()
    assert (opened["state"], opened["manual"], opened["retry_at"]) == ("open", True, None)
    assert CircuitBreaker.objects.get(host=host).manual


def test_limit_and_breaker_changes_are_audited_under_their_actor(admin_api, admin, api, user, name):
    admin_api.put(f"/api/v1/rate-limits/{name}/", {"rate": 10, "burst": 20}, format="json")
    assert admin_api.delete(f"/api/v1/rate-limits/{name}/").status_code == 204
    host = f"{name}.audit"
    assert api.post(f"/api/v1/breakers/{host}/open/").status_code == 200
    assert api.post(f"/api/v1/breakers/{host}/close/").status_code == 200
    trail = AuditEvent.objects.filter(subject__contains=name).order_by("id")
    assert [(e.action, e.actor, e.subject, e.details) for e in trail] == [
        ("rate_limit.set", admin, f"rate limit {name}", {"rate": 10.0, "burst": 20}),
        ("rate_limit.deleted", admin, f"rate limit {name}", {}),
        ("breaker.opened", user, f"breaker of {host}", {}),
        ("breaker.closed", user, f"breaker of {host}", {}),
    ]
    # A refused change leaves no row.
    assert admin_api.delete(f"/api/v1/rate-limits/{name}/").status_code == 404
    assert AuditEvent.objects.filter(subject__contains=name).count() == 4
