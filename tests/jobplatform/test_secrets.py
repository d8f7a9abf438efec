"""Every secret comes from NAME or from the file named by NAME_FILE (a Docker secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobplatform.secrets import SecretError, env_secret, url_with_password

REPO = Path(__file__).resolve().parents[2]


def test_a_secret_comes_from_the_variable_or_the_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-the-file\n")
    assert env_secret("KEY", environ={"KEY": "from-env"}) == "from-env"
    assert env_secret("KEY", environ={"KEY_FILE": str(secret)}) == "from-the-file"
    assert env_secret("KEY", environ={"KEY": "", "KEY_FILE": str(secret)}) == "from-the-file"
    assert env_secret("KEY", "fallback", environ={}) == "fallback"


def test_a_secret_set_twice_missing_or_unreadable_is_an_error(tmp_path):
    with pytest.raises(SecretError, match="not both"):
        env_secret("KEY", environ={"KEY": "a", "KEY_FILE": str(tmp_path / "x")})
    with pytest.raises(SecretError, match="must be set"):
        env_secret("KEY", environ={})
    with pytest.raises(SecretError, match="KEY_FILE="):
        env_secret("KEY", environ={"KEY_FILE": str(tmp_path / "missing")})


def test_a_password_goes_into_a_url_escaped():
    assert (
        url_with_password("redis://redis:6379/0", "p@ss:w/rd")
        == "redis://:p%40ss%3Aw%2Frd@redis:6379/0"
    )
    assert url_with_password("redis://u:old@h/1", "new") == "redis://u:new@h/1"
    assert url_with_password("redis://h/1", "") == "redis://h/1"


def test_the_settings_read_every_secret_from_files(tmp_path):
    """The real settings module, in a fresh process, with every secret in a file as compose
    mounts them: the values arrive where Django, Celery and the webhook read them."""
    files = {
        "DJANGO_SECRET_KEY": "k" * 60,
        "DATABASE_PASSWORD": "db pass/with:odd@chars",
        "REDIS_PASSWORD": "redis:pw",
        "JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET": "hook-secret",
        "JOBPLATFORM_CALLBACK_SECRET": "callback-secret",
        "JOBPLATFORM_COMPLETION_WEBHOOK_SECRET": "completion-secret",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(files))}
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    env |= {
        "DATABASE_URL": "postgres://jobplatform@db.internal:5432/jobplatform",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "DJANGO_SETTINGS_MODULE": "jobplatform.settings",
    }
    code = (
        "from django.conf import settings as s; import json; print(json.dumps(["
        "s.SECRET_KEY, s.DATABASES['default']['PASSWORD'], s.CELERY_BROKER_URL,"
        " s.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET, s.JOBPLATFORM_CALLBACK_SECRET,"
        " s.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (
        f'["{"k" * 60}", "db pass/with:odd@chars", "redis://:redis%3Apw@redis.internal:6379/0",'
        ' "hook-secret", "callback-secret", "completion-secret"]'
    )
