"""Throttles: per user, per API key and per anonymous address, counted in Redis.

Throttling is off in tests/settings.py; each test here turns the rates it needs on. Counts live
in Redis across test runs, so every test uses a new user, key or client address.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.conftest import client_for

pytestmark = pytest.mark.django_db

JOBS, KEYS, TOKEN = "/api/v1/jobs/", "/api/v1/keys/", "/api/v1/auth/token/"


@pytest.fixture
def rates(settings: Any):
    def set_rates(**rates: str | None) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "api_key": None, **rates},
        }

    return set_rates


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "API.THROTTLED"
    assert 1 <= int(response["Retry-After"]) <= 60


def key_client(api: APIClient) -> APIClient:
    key = api.post(KEYS, {"name": "k"}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_a_user_over_their_rate_gets_429_with_retry_after(api, rates):
    rates(user="3/min")
    assert [api.get(JOBS).status_code for _ in range(3)] == [200, 200, 200]
    assert_throttled(api.get(JOBS))


def test_the_user_rate_counts_every_credential_of_the_user(api, rates):
    keyed = key_client(api)  # not counted: throttling is still off
    rates(user="3/min", api_key="100/min")
    assert [api.get(JOBS).status_code, keyed.get(JOBS).status_code, api.get(JOBS).status_code] == [
        200, 200, 200,
    ]  # fmt: skip
    assert_throttled(keyed.get(JOBS))


def test_each_key_has_its_own_rate_under_its_users(api, rates):
    first, second = key_client(api), key_client(api)
    rates(user="100/min", api_key="2/min")
    assert [first.get(JOBS).status_code for _ in range(2)] == [200, 200]
    assert_throttled(first.get(JOBS))
    assert second.get(JOBS).status_code == 200


def test_other_users_are_not_throttled_by_one_user(api, rates, admin):
    rates(user="1/min")
    api.get(JOBS)
    assert_throttled(api.get(JOBS))
    assert client_for(admin).get(JOBS).status_code == 200


def test_anonymous_logins_are_throttled_per_address(user, rates):
    rates(anon="2/min")
    address = f"192.0.2.{random.randrange(1, 255)}"  # TEST-NET-1: a header value, no traffic
    client = APIClient(REMOTE_ADDR=address)
    bad = {"username": user.username, "password": "guess"}
    assert [client.post(TOKEN, bad, format="json").status_code for _ in range(2)] == [401, 401]
    assert_throttled(client.post(TOKEN, bad, format="json"))
    # A forged X-Forwarded-For does not pick a new address (DJANGO_NUM_PROXIES is 0).
    assert_throttled(client.post(TOKEN, bad, format="json", HTTP_X_FORWARDED_FOR="198.51.100.7"))


def test_the_health_check_is_never_throttled(rates):
    rates(anon="1/min")
    client = APIClient(REMOTE_ADDR=f"192.0.2.{random.randrange(1, 255)}")
    assert [client.get("/api/v1/health/").status_code for _ in range(3)] == [200, 200, 200]


def test_the_counts_live_in_redis_where_every_web_process_sees_them(api, user, rates):
    rates(user="5/min")
    for _ in range(3):
        api.get(JOBS)
    server = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    [key] = server.keys(f"jobplatform:*throttle:user:{user.pk}:*")
    assert int(server.get(key)) == 3
    assert 0 < server.ttl(key) <= 61
