"""`manage.py check --deploy` is clean with the production settings behind HTTPS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def deploy_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "jobplatform.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "jobs.example.com",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_check_deploy_is_clean_with_https_on():
    result = deploy_check(DJANGO_SECURE="1")
    assert result.returncode == 0, result.stderr
    # Silenced: security.W021 (HSTS preload), the domain owner's choice: DJANGO_SECURE_HSTS_PRELOAD.
    assert "System check identified no issues (1 silenced)" in result.stdout


def test_without_https_check_deploy_names_what_is_missing():
    result = deploy_check()
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr
