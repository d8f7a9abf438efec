"""API keys through the REST API: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from jobplatform.models import ApiKey, AuditEvent
from jobplatform.roles import Role
from jobs.models import Job
from tests.conftest import client_for
from tests.factories import UserFactory, with_role
from tests.support import executions_of_prepared

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/keys/"
JOBS = "/api/v1/jobs/"
JOB = {"name": "n", "steps": [{"type": "log", "params": {"message": "hi"}}]}


def create_key(client: APIClient, **body: Any) -> dict[str, Any]:
    response = client.post(KEYS, {"name": "ci", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_a_key_is_shown_once_and_stored_as_a_hash_with_only_its_prefix_in_clear(api, user):
    created = create_key(api, name="deploys")
    key = created["key"]
    prefix, _, secret = key.partition(".")
    assert (created["prefix"], created["name"], created["user"]) == (
        prefix,
        "deploys",
        user.username,
    )
    assert created["scopes"] == ["read", "write"] and created["revoked"] is False
    assert len(prefix) == 8 and len(secret) == 32

    row = ApiKey.objects.get(prefix=prefix)
    assert row.hashed_key.startswith("sha512$$") and secret not in row.hashed_key
    with connection.cursor() as cursor:  # the whole key appears in no column of the table
        cursor.execute(
            "SELECT count(*) FROM jobplatform_apikey k WHERE row(k.*)::text LIKE %s",
            [f"%{secret}%"],
        )
        assert cursor.fetchone()[0] == 0

    [listed] = api.get(KEYS).json()["results"]
    assert listed["prefix"] == prefix and "key" not in listed
    event = AuditEvent.objects.get(action="api_key.created")
    assert (event.actor, event.details["prefix"], event.details["scopes"]) == (
        user, prefix, ["read", "write"]
    )  # fmt: skip


def test_a_key_acts_as_its_user(api, user):
    key = create_key(api)["key"]
    response = with_key(key).post(JOBS, JOB, format="json")
    assert response.status_code == 201
    assert Job.objects.get(id=response.json()["id"]).owner == user
    assert [j["id"] for j in with_key(key).get(JOBS).json()["results"]] == [response.json()["id"]]


def test_a_read_scoped_key_reads_but_cannot_submit(api):
    key = create_key(api, scopes=["read"])["key"]
    assert with_key(key).get(JOBS).status_code == 200
    response = with_key(key).post(JOBS, JOB, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AUTH.INSUFFICIENT_SCOPE"
    assert response.json()["error"]["details"] == {"required": "write", "scopes": ["read"]}
    assert not Job.objects.exists()


def test_a_write_only_key_submits_but_cannot_read(api):
    key = create_key(api, scopes=["write"])["key"]
    assert with_key(key).post(JOBS, JOB, format="json").status_code == 201
    assert with_key(key).get(JOBS).json()["error"]["code"] == "AUTH.INSUFFICIENT_SCOPE"


def test_a_key_has_at_most_its_users_role(viewer):
    key = create_key(client_for(viewer))["key"]  # read and write scopes
    assert with_key(key).get(JOBS).status_code == 200
    response = with_key(key).post(JOBS, JOB, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "AUTH.PERMISSION_DENIED",
    )


def test_an_expired_key_is_refused(api):
    created = create_key(api, expires_at=(timezone.now() + timedelta(days=1)).isoformat())
    assert with_key(created["key"]).get(JOBS).status_code == 200
    ApiKey.objects.filter(prefix=created["prefix"]).update(
        expiry_date=timezone.now() - timedelta(seconds=1)
    )
    response = with_key(created["key"]).get(JOBS)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "AUTH.INVALID_CREDENTIALS",
        "message": "This API key has expired.",
        "details": {},
    }


def test_a_revoked_key_is_refused_and_revoking_again_changes_nothing(api, user):
    created = create_key(api)
    key, prefix = created["key"], created["prefix"]
    response = api.post(f"{KEYS}{prefix}/revoke/")
    assert response.status_code == 200 and response.json()["revoked"] is True
    refused = with_key(key).get(JOBS)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This API key was revoked."
    assert api.post(f"{KEYS}{prefix}/revoke/").status_code == 200
    [event] = AuditEvent.objects.filter(action="api_key.revoked")
    assert (event.actor, event.subject) == (user, f"key {prefix} of {user.username}")


def test_others_keys_are_not_found_but_an_admin_lists_and_revokes_every_key(api, user, admin):
    mine = create_key(api)
    other = with_role(UserFactory(), Role.OPERATOR)
    theirs = create_key(client_for(other))
    response = api.post(f"{KEYS}{theirs['prefix']}/revoke/")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "KEYS.NOT_FOUND")
    assert [k["prefix"] for k in api.get(KEYS).json()["results"]] == [mine["prefix"]]

    admin_api = client_for(admin)
    listed = {k["prefix"] for k in admin_api.get(KEYS).json()["results"]}
    assert listed == {mine["prefix"], theirs["prefix"]}
    only_theirs = admin_api.get(f"{KEYS}?user={other.username}").json()["results"]
    assert [k["prefix"] for k in only_theirs] == [theirs["prefix"]]
    assert admin_api.post(f"{KEYS}{theirs['prefix']}/revoke/").json()["revoked"] is True
    assert with_key(theirs["key"]).get(JOBS).status_code == 401


def test_an_admin_creates_a_key_for_another_user_and_nobody_else_may(api, admin):
    other = with_role(UserFactory(), Role.OPERATOR)
    refused = api.post(KEYS, {"name": "x", "user": other.username}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        403,
        "AUTH.PERMISSION_DENIED",
    )
    created = create_key(client_for(admin), user=other.username, scopes=["read"])
    assert created["user"] == other.username
    job = with_key(created["key"]).get(JOBS)
    assert job.status_code == 200
    assert ApiKey.objects.get(prefix=created["prefix"]).created_by == admin
    unknown = client_for(admin).post(KEYS, {"name": "x", "user": "nobody"}, format="json")
    assert unknown.json()["error"]["code"] == "KEYS.UNKNOWN_USER"


def test_a_key_cannot_create_keys(api):
    key = create_key(api)["key"]
    response = with_key(key).post(KEYS, {"name": "child"}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "KEYS.CREATED_WITH_API_KEY",
    )
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"scopes": ["admin"]}, "KEYS.INVALID_SCOPES"),
        ({"scopes": []}, "KEYS.INVALID_SCOPES"),
        ({"name": "x" * 51}, "KEYS.INVALID_NAME"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "KEYS.EXPIRY_IN_PAST"),
        ({"scope": ["read"]}, "API.VALIDATION_ERROR"),
        ({"scopes": "read"}, "API.VALIDATION_ERROR"),
    ],
)
def test_invalid_key_requests_are_400s_that_create_nothing(api, body, code):
    response = api.post(KEYS, {"name": "ci", **body}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert not ApiKey.objects.exists()


def test_last_used_is_written_at_most_once_a_minute(api):
    created = create_key(api)
    client, prefix = with_key(created["key"]), created["prefix"]
    assert ApiKey.objects.get(prefix=prefix).last_used_at is None
    client.get(JOBS)
    first = ApiKey.objects.get(prefix=prefix).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        client.get(JOBS)
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiKey.objects.get(prefix=prefix).last_used_at == first
    ApiKey.objects.filter(prefix=prefix).update(last_used_at=first - timedelta(seconds=61))
    client.get(JOBS)
    assert ApiKey.objects.get(prefix=prefix).last_used_at > first


def test_each_request_looks_its_key_up_with_one_prepared_statement(api):
    client = with_key(create_key(api)["key"])
    client.get(JOBS)  # prepares it on this connection, and writes last_used_at
    before = executions_of_prepared("jobplatform_apikey")
    assert client.get(JOBS).status_code == 200
    assert client.get(JOBS).status_code == 200
    assert executions_of_prepared("jobplatform_apikey") == before + 2


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key ",
        "Api-Key nodot",
        "Api-Key abcdefgh.",
        "Api-Key unknown1.secret",
        "Api-Key " + "x" * 200 + ".y",
    ],
)
def test_a_malformed_or_unknown_key_is_a_401_not_a_500(client, header):
    response = client.get(JOBS, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH.INVALID_CREDENTIALS"


def test_a_key_with_a_nul_is_refused_before_authentication(client):
    """NUL in any header is refused by the middleware (docs/security.md#input-limits)."""
    response = client.get(JOBS, HTTP_AUTHORIZATION="Api-Key a\x00b.c")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.INVALID_CHARACTERS"


def test_the_right_prefix_with_a_wrong_secret_is_refused(api):
    prefix = create_key(api)["prefix"]
    response = with_key(f"{prefix}.{'x' * 32}").get(JOBS)
    assert response.status_code == 401


def test_the_admin_creates_a_key_shown_once_and_revokes_it_with_the_action(client, admin, user):
    client.force_login(admin)
    form = {"user": user.pk, "name": "from-admin", "scopes": "read"}
    response = client.post("/admin/jobplatform/apikey/add/", form, follow=True)
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from-admin")
    [message] = [str(m) for m in response.context["messages"] if "is: " in str(m)]
    shown = message.split("is: ")[1].split(" ")[0]
    assert shown.startswith(key.prefix + ".") and key.scopes == ["read"]
    assert with_key(shown).get(JOBS).status_code == 200
    assert AuditEvent.objects.filter(action="api_key.created", actor=admin).exists()

    client.post(
        "/admin/jobplatform/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    assert ApiKey.objects.get(pk=key.pk).revoked
    assert with_key(shown).get(JOBS).status_code == 401
    assert AuditEvent.objects.filter(action="api_key.revoked", actor=admin).exists()
