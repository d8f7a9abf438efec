from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from jobplatform.models import AuditEvent

pytestmark = pytest.mark.django_db


def issue(*args: str) -> str:
    out = StringIO()
    call_command("issue_token", *args, stdout=out)
    return out.getvalue()


def test_issue_token_creates_an_operator_then_reuses_the_user_and_its_token(client):
    first = issue("demo", "--staff", "--password", "s3cret-pass")
    second = issue("demo")
    token = re.search(r"API token: (\w+)", first).group(1)
    assert first.startswith("created user demo (role operator)")
    assert second.startswith("reused user demo (role operator)") and token in second
    user = get_user_model().objects.get(username="demo")
    # Staff logs in to the admin; it no longer makes a superuser.
    assert user.is_staff and not user.is_superuser and user.check_password("s3cret-pass")
    assert client.get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    response = client.post(
        "/api/v1/jobs/",
        {"name": "n", "steps": [{"type": "log", "params": {"message": "hi"}}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert response.status_code == 201


def test_a_role_given_replaces_the_previous_one_and_the_superuser_flag_and_is_audited():
    issue("ops", "--role", "admin")
    user = get_user_model().objects.get(username="ops")
    user.is_superuser = True  # made by an older issue_token --staff
    user.save()
    out = issue("ops", "--role", "viewer")
    user.refresh_from_db()
    assert "(role viewer)" in out
    assert list(user.groups.values_list("name", flat=True)) == ["viewer"]
    assert not user.is_superuser
    event = AuditEvent.objects.filter(subject="user ops").first()
    assert event.action == "user.access_changed" and event.actor is None
    assert event.details == {
        "before": {"groups": ["admin"], "is_superuser": True},
        "after": {"groups": ["viewer"], "is_superuser": False},
    }
