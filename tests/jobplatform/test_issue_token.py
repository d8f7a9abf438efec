from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def issue(*args: str) -> str:
    out = StringIO()
    call_command("issue_token", *args, stdout=out)
    return out.getvalue()


def test_issue_token_creates_then_reuses_a_user_and_its_token(client):
    first = issue("demo", "--staff", "--password", "s3cret-pass")
    second = issue("demo")
    token = re.search(r"API token: (\w+)", first).group(1)
    assert first.startswith("created user demo") and second.startswith("reused user demo")
    assert token in second
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and user.check_password("s3cret-pass")
    response = client.get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
