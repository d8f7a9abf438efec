"""The dispatcher's LISTEN connection: direct to PostgreSQL (DATABASE_DIRECT_URL, else the
default database), with every option of its URL, as Django's own connections have them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import environ
import psycopg
import pytest
from django.db import connections

from jobs.dispatcher import Dispatcher
from jobs.schedules.services import SCHEDULES_CHANNEL
from jobs.services import DISPATCH_CHANNEL

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db

# A dispatcher wakes for submissions and for schedule edits (its sweep chore).
LISTENED = {DISPATCH_CHANNEL, SCHEDULES_CHANNEL}


def listening(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT pg_listening_channels()").fetchall()}


def setting(conn: psycopg.Connection, name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def test_listen_keeps_the_options_of_database_url(monkeypatch):
    options = connections["default"].settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "options", "-c statement_timeout=4321")
    monkeypatch.setitem(options, "application_name", "jp-listen-default")
    monkeypatch.setitem(options, "sslmode", "disable")
    dispatcher = Dispatcher(poll=1)
    dispatcher._ensure_listening()
    conn = dispatcher._listener
    assert conn is not None
    try:
        assert setting(conn, "statement_timeout") == "4321ms"
        assert setting(conn, "application_name") == "jp-listen-default"
        assert conn.info.get_parameters()["sslmode"] == "disable"
        assert listening(conn) == LISTENED
    finally:
        dispatcher._close()


def test_listen_uses_database_direct_url_with_its_options(settings):
    db = connections["default"].settings_dict
    url = (
        f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        "?sslmode=disable&application_name=jp-listen-direct"
        "&options=-c%20statement_timeout%3D8765"
    )
    settings.DATABASE_DIRECT = environ.Env.db_url_config(url)
    dispatcher = Dispatcher(poll=1)
    dispatcher._ensure_listening()
    conn = dispatcher._listener
    assert conn is not None
    try:
        assert setting(conn, "application_name") == "jp-listen-direct"
        assert setting(conn, "statement_timeout") == "8765ms"
        assert conn.info.get_parameters()["sslmode"] == "disable"
        assert conn.info.dbname == db["NAME"]
        assert listening(conn) == LISTENED
    finally:
        dispatcher._close()


def test_the_settings_read_database_direct_url_with_the_shared_password(tmp_path):
    """The real settings module, in a fresh process: DATABASE_DIRECT_URL keeps its options, and
    DATABASE_PASSWORD (from a secret file) is the password of both URLs."""
    (tmp_path / "db_password").write_text("s3cret/pw\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "jobplatform.settings",
        "DATABASE_URL": "postgres://app@pgbouncer:6432/jobs?application_name=web",
        "DATABASE_DIRECT_URL": "postgres://app@primary:5432/jobs?sslmode=verify-full"
        "&sslrootcert=/run/secrets/ca.pem&options=-c%20lock_timeout%3D5000",
        "DATABASE_PASSWORD_FILE": str(tmp_path / "db_password"),
        "DATABASE_SERVER_SIDE_CURSORS": "0",
    }
    code = (
        "import json; from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(json.dumps([s.DATABASE_DIRECT, d['PASSWORD'], d['OPTIONS'],"
        " d['DISABLE_SERVER_SIDE_CURSORS']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    direct, password, options, no_cursors = json.loads(out.stdout)
    assert (direct["HOST"], direct["PORT"], direct["NAME"]) == ("primary", 5432, "jobs")
    assert direct["PASSWORD"] == password == "s3cret/pw"
    assert direct["OPTIONS"] == {
        "sslmode": "verify-full",
        "sslrootcert": "/run/secrets/ca.pem",
        "options": "-c lock_timeout=5000",
    }
    assert options["application_name"] == "web"
    assert no_cursors is True
