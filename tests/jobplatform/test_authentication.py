"""Token authentication: DRF's answers, from one prepared statement."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from jobplatform.api.authentication import TokenAuthentication
from tests.conftest import client_for
from tests.jobs.factories import JobFactory
from tests.support import executions_of_prepared

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"


def test_the_token_lookup_builds_the_same_token_and_user_as_the_orm(admin):
    token = Token.objects.create(user=admin)
    user, found = TokenAuthentication().authenticate_credentials(token.key)
    expected = get_user_model().objects.get(pk=admin.pk)
    fields = [f.attname for f in expected._meta.concrete_fields]
    assert [getattr(user, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert (found.key, found.user_id, found.created, found.user) == (
        token.key,
        admin.pk,
        token.created,
        user,
    )
    assert user._state.adding is False and user._state.db == "default"


def test_each_request_looks_its_token_up_with_one_prepared_statement(api):
    api.get(URL)  # prepares it on this connection, if it had not yet
    before = executions_of_prepared("authtoken_token")
    assert api.get(URL).status_code == 200
    assert api.get(URL).status_code == 200
    assert executions_of_prepared("authtoken_token") == before + 2


def test_the_authenticated_user_is_the_tokens_owner_with_its_flags(admin, user):
    theirs = JobFactory(owner=user)
    listed = client_for(admin).get(URL).json()["results"]  # admins see every owner's jobs
    assert [job["id"] for job in listed] == [str(theirs.id)]
    assert client_for(user).get(URL).json()["results"][0]["owner"] == user.username


def test_a_deactivated_users_token_is_refused(api, user):
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = api.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH.INVALID_CREDENTIALS"


@pytest.mark.parametrize("key", ["x" * 41, "0" * 40])
def test_a_malformed_or_unknown_token_is_a_401_not_a_500(client, key):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH.INVALID_CREDENTIALS"


def test_a_nul_in_the_token_is_refused_before_authentication(client):
    # Any header with a NUL is refused by jobplatform.middleware.RejectUnstorableInput.
    response = client.get(URL, HTTP_AUTHORIZATION="Token abc\x00def")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.INVALID_CHARACTERS"
