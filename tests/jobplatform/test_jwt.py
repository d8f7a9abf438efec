"""JWTs for interactive clients: login, use, expiry, refresh, and the roles claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from jobplatform.roles import Role
from jobplatform.services import user_set_role

pytestmark = pytest.mark.django_db

TOKEN, REFRESH, JOBS = "/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/jobs/"
JOB = {"name": "n", "steps": [{"type": "log", "params": {"message": "hi"}}]}
PASSWORD = "correct horse battery"


@pytest.fixture
def login(user):
    user.set_password(PASSWORD)
    user.save()
    response = APIClient().post(
        TOKEN, {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refresh(token: str) -> Any:
    return APIClient().post(REFRESH, {"refresh": token}, format="json")


def claims(token: str) -> dict:
    return jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])


def test_login_gives_an_access_and_a_refresh_token_carrying_the_roles(login, user):
    access = claims(login["access"])
    assert access["token_type"] == "access" and access["user_id"] == str(user.pk)
    assert access["roles"] == ["operator"]
    assert claims(login["refresh"])["roles"] == ["operator"]
    lifetime = access["exp"] - access["iat"]
    assert lifetime == settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() == 300


def test_the_access_token_authenticates_reads_and_writes(login, user):
    client = bearer(login["access"])
    created = client.post(JOBS, JOB, format="json")
    assert created.status_code == 201
    assert [j["id"] for j in client.get(JOBS).json()["results"]] == [created.json()["id"]]


@pytest.mark.parametrize(
    ("password", "status", "code"),
    [("wrong", 401, "AUTH.INVALID_CREDENTIALS"), ("", 400, "API.VALIDATION_ERROR")],
)
def test_a_wrong_password_gets_no_token(user, password, status, code):
    user.set_password(PASSWORD)
    user.save()
    response = APIClient().post(
        TOKEN, {"username": user.username, "password": password}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_an_expired_access_token_is_refused(user):
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(minutes=10))  # forged: 5 minutes ago
    response = bearer(str(token)).get(JOBS)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "AUTH.INVALID_CREDENTIALS",
        "message": "Given token not valid for any token type",
        "details": {},
    }


def test_refresh_gives_a_new_access_token_with_the_current_roles(login, user):
    user_set_role(user=user, role=Role.VIEWER, actor=None)
    response = APIClient().post(REFRESH, {"refresh": login["refresh"]}, format="json")
    assert response.status_code == 200
    access = response.json()["access"]
    assert claims(access)["roles"] == ["viewer"]
    assert bearer(access).get(JOBS).status_code == 200


def test_permissions_come_from_the_database_not_the_claim(login, user):
    user_set_role(user=user, role=Role.VIEWER, actor=None)  # the token still says operator
    response = bearer(login["access"]).post(JOBS, JOB, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "AUTH.PERMISSION_DENIED",
    )


def test_a_refresh_token_is_not_an_access_token(login):
    assert bearer(login["refresh"]).get(JOBS).status_code == 401


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000])
def test_a_malformed_token_is_a_401_never_a_500(token):
    assert bearer(token).get(JOBS).status_code == 401
    response = APIClient().post(REFRESH, {"refresh": token}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (
        401,
        "AUTH.INVALID_CREDENTIALS",
    )


def test_a_password_change_revokes_access_and_refresh_tokens(login, user):
    user.set_password("a brand new password")
    user.save()
    assert bearer(login["access"]).get(JOBS).status_code == 401
    response = APIClient().post(REFRESH, {"refresh": login["refresh"]}, format="json")
    assert response.status_code == 401


def test_a_deactivated_or_deleted_user_is_refused_with_a_401(login, user):
    user.is_active = False
    user.save()
    assert bearer(login["access"]).get(JOBS).status_code == 401
    assert (
        APIClient().post(REFRESH, {"refresh": login["refresh"]}, format="json").status_code == 401
    )
    user.delete()
    assert bearer(login["access"]).get(JOBS).status_code == 401
    assert (
        APIClient().post(REFRESH, {"refresh": login["refresh"]}, format="json").status_code == 401
    )
