"""Probes (/healthz, /readyz), the processes' liveness (API, manage.py health, admin), and who
may read /metrics (the bearer of its token)."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobplatform import health
from jobplatform.celery import app as celery_app
from jobplatform.liveness import ProcessIdentity, process_beat, process_forget_silent
from jobplatform.models import ProcessHeartbeat
from tests.conftest import REPO, client_for
from tests.support import wait_for

pytestmark = pytest.mark.django_db


def test_healthz_answers_whatever_the_host_and_touches_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")  # not an allowed host
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_reports_database_broker_and_migrations(client):
    response = client.get("/readyz", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "migrations": "ok"},
    }


def test_readyz_is_503_while_the_broker_is_unreachable(client):
    saved = celery_app.conf.broker_url
    celery_app.conf["broker_url"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get("/readyz")
    finally:
        celery_app.conf["broker_url"] = saved
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"].startswith("error: ")
    assert body["checks"]["database"] == "ok"


def test_readyz_is_503_until_every_migration_is_applied(client, monkeypatch):
    monkeypatch.setattr(health, "_migrated", False)
    # The app's latest migration (a leaf): the plan to the leaves skips an earlier one whose
    # successor is recorded as applied.
    applied = MigrationRecorder.Migration.objects.filter(app="jobplatform").latest("id")
    applied.delete()  # as if `migrate` had not run it yet
    try:
        response = client.get("/readyz")
    finally:
        MigrationRecorder.Migration.objects.create(app=applied.app, name=applied.name)
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "error: 1 migrations not applied"
    assert client.get("/readyz").status_code == 200


def test_the_old_health_url_is_readiness(client):
    assert client.get("/api/v1/health/").json() == client.get("/readyz").json()


def test_metrics_answer_to_their_bearer_token_only(client, settings, admin):
    settings.JOBPLATFORM_METRICS_TOKEN = "s3cret"

    def refused(authorization: str | None) -> tuple[int, str]:
        headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
        response = client.get("/metrics", **headers)
        assert response["Content-Type"] == "application/json"
        return response.status_code, response.json()["error"]["code"]

    assert refused(None) == (401, "AUTH.NOT_AUTHENTICATED")
    assert client.get("/metrics")["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert refused("Bearer wrong") == (401, "AUTH.INVALID_CREDENTIALS")
    assert refused("Bearer s3cret\u00e9") == (401, "AUTH.INVALID_CREDENTIALS")  # not a 500
    # An admin's own token opens the API, not the metrics: they have a credential of their own.
    admin_token = Token.objects.create(user=admin).key
    assert refused(f"Token {admin_token}") == (401, "AUTH.INVALID_CREDENTIALS")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert response.status_code == 200
    assert b"jobplatform_queue_jobs" in response.content


def test_metrics_are_closed_while_no_token_is_set(client, settings):
    settings.JOBPLATFORM_METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "METRICS.DISABLED"


def beat_row(name: str, seconds_ago: float) -> None:
    process_beat(process=ProcessIdentity.here("beat", name=name))
    ProcessHeartbeat.objects.filter(name=name).update(
        beat_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def health_command(**options) -> tuple[object, str]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("health", stdout=out, **options)
    return exit_.value.code, out.getvalue().strip()


@pytest.mark.integration
def test_health_by_role_says_whether_a_process_of_this_host_beats(platform):
    # Their rows are alive for 3 intervals of 0.5 s: on a loaded machine a beat can come late, so
    # the first answer awaited is a live one (a worker that never beats fails here after 30 s).
    def alive(role: str) -> str | None:
        code, said = health_command(role=role)
        return said if code == 0 else None

    assert platform.hostname in wait_for(lambda: alive("worker"), what="a live worker")
    wait_for(lambda: alive("dispatcher"), what="a live dispatcher")
    assert health_command(role="beat") == (
        1,
        f"no live beat on {ProcessIdentity.here('beat').hostname}",
    )
    beat_row("gone", seconds_ago=60)  # 3 intervals of 0.5 s: long dead
    code, said = health_command(role="beat")
    assert code == 1 and "last beat 60s ago (gone)" in said
    beat_row("elsewhere", seconds_ago=0)
    ProcessHeartbeat.objects.filter(name="elsewhere").update(hostname="another-host")
    assert health_command(role="beat")[0] == 1  # not on this host
    assert health_command(role="beat", anywhere=True)[0] == 0
    assert health_command() == (0, "database=ok broker=ok migrations=ok")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_beat_says_it_is_alive(platform, tmp_path):
    def health_cli() -> int:
        return subprocess.run(
            [sys.executable, "manage.py", "health", "--role", "beat"],
            cwd=REPO, env=platform.env, capture_output=True, check=False,
        ).returncode  # fmt: skip

    assert health_cli() == 1
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "jobplatform", "beat", "--loglevel", "INFO",
             "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile", "",
             "--schedule", str(tmp_path / "beat.db")],
            cwd=REPO, env=platform.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(
            lambda: ProcessHeartbeat.objects.filter(role="beat", pid=beat.pid).exists(),
            timeout=60,
            what="beat's first liveness row",
        )
        assert health_cli() == 0
    finally:
        beat.terminate()
        beat.wait(timeout=20)


@pytest.mark.integration
def test_the_processes_endpoint_lists_every_process_for_admins(platform, admin, user):
    beat_row("old-beat", seconds_ago=60)
    response = client_for(admin).get("/api/v1/health/processes/")
    assert response.status_code == 503  # no live beat
    body = response.json()
    assert body["status"] == "degraded"
    assert body["alive"]["beat"] == 0
    assert body["alive"]["worker"] >= 1 and body["alive"]["dispatcher"] >= 1
    [worker] = [p for p in body["processes"] if p["name"] == platform.hostname]
    assert worker["role"] == "worker" and worker["alive"] is True
    assert worker["details"] == {"queues": ["default", "webhooks"], "concurrency": 2}
    assert worker["seconds_since_beat"] < 1.5
    [old] = [p for p in body["processes"] if p["name"] == "old-beat"]
    assert old["alive"] is False and old["seconds_since_beat"] >= 60
    beat_row("new-beat", seconds_ago=0)
    assert client_for(admin).get("/api/v1/health/processes/").status_code == 200
    assert client_for(user).get("/api/v1/health/processes/").status_code == 403


@pytest.mark.integration
def test_the_admin_lists_the_processes(platform, admin_client):
    response = admin_client.get("/admin/jobplatform/processheartbeat/")
    assert response.status_code == 200
    assert platform.hostname in response.content.decode()
    row = ProcessHeartbeat.objects.get(name=platform.hostname)
    change = admin_client.post(f"/admin/jobplatform/processheartbeat/{row.id}/change/", {})
    assert change.status_code == 403  # written by the processes only


def test_rows_of_processes_silent_for_a_day_are_forgotten():
    beat_row("yesterday", seconds_ago=86400 + 60)
    beat_row("today", seconds_ago=3600)
    assert process_forget_silent() == 1
    names = set(ProcessHeartbeat.objects.values_list("name", flat=True))
    assert "today" in names and "yesterday" not in names
