"""Rate limits and circuit breakers in the admin: seen, set, opened and closed by hand."""

from __future__ import annotations

import uuid

import pytest

from jobplatform.roles import Role
from jobs import ratelimit
from jobs.models import CircuitBreaker, RateLimit
from jobs.services.dependencies import breaker_failure
from tests.factories import UserFactory, with_role

pytestmark = pytest.mark.django_db


def logged_in(client, role: Role):
    client.force_login(with_role(UserFactory(is_staff=True), role))
    return client


def test_admins_set_a_rate_limit_and_see_its_bucket(client):
    admin = logged_in(client, Role.ADMIN)
    name = f"admin-{uuid.uuid4().hex[:8]}"
    try:
        response = admin.post(
            "/admin/jobs/ratelimit/add/", {"name": name, "rate": "4", "burst": "8"}
        )
        assert response.status_code == 302, response.content
        limit = RateLimit.objects.get(name=name)
        assert (limit.rate, limit.burst) == (4, 8)
        page = admin.get(f"/admin/jobs/ratelimit/{name}/change/")
        assert page.status_code == 200 and b"Tokens now" in page.content
    finally:
        ratelimit.forget(name)


def test_operators_open_and_close_a_breaker_and_viewers_only_see_it(client, settings):
    settings.JOBPLATFORM_BREAKER_FAILURES = 1
    host = "admin.example"
    breaker_failure(host=host)
    operator = logged_in(client, Role.OPERATOR)
    listing = operator.get("/admin/jobs/circuitbreaker/")
    assert listing.status_code == 200 and b"admin.example" in listing.content
    operator.post(
        "/admin/jobs/circuitbreaker/", {"action": "close_breakers", "_selected_action": [host]}
    )
    assert CircuitBreaker.objects.get(host=host).state == CircuitBreaker.State.CLOSED
    operator.post(
        "/admin/jobs/circuitbreaker/", {"action": "open_breakers", "_selected_action": [host]}
    )
    breaker = CircuitBreaker.objects.get(host=host)
    assert (breaker.state, breaker.manual) == (CircuitBreaker.State.OPEN, True)
    client.logout()
    viewer = logged_in(client, Role.VIEWER)
    listing = viewer.get("/admin/jobs/circuitbreaker/")
    assert listing.status_code == 200 and b"close_breakers" not in listing.content
