"""End to end through PgBouncer in transaction mode: submit, release, run, retry and cancel, the
web, the worker and the dispatcher each on the pooler, the dispatcher's LISTEN direct."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from jobplatform_client import Client
from rest_framework.authtoken.models import Token

from jobplatform.roles import Role
from tests.factories import UserFactory, with_role
from tests.pgbouncer.conftest import DIRECT_APP, POOL_SIZE, POOLED_APP, QUEUE
from tests.support import wait_for

pytestmark = [
    pytest.mark.pgbouncer,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]


def key() -> str:
    return uuid.uuid4().hex


def admin(pooled, command: str) -> list[dict]:
    """Rows of a PgBouncer admin console command."""
    with psycopg.connect(pooled.bouncer.url("pgbouncer"), autocommit=True) as conn:
        cursor = conn.execute(command)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def sessions(application_name: str) -> list[str]:
    """The current query of each PostgreSQL session with that application_name."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return [row[0] for row in cursor.fetchall()]


def test_jobs_run_retry_and_cancel_through_pgbouncer(pooled, http_target):
    token = Token.objects.create(user=with_role(UserFactory(), Role.OPERATOR)).key
    fast = {"queue": QUEUE, "retry_backoff": 0.05, "retry_backoff_max": 0.2}
    ok, flaky, gate, after = key(), key(), key(), key()
    with Client(pooled.web, token=token) as jp:
        done = jp.jobs.submit(
            name="pooled",
            steps=[
                {"type": "http", "params": {"url": f"{http_target.url}/ok/{ok}"}},
                {"type": "reverse", "params": {"text": "abc"}},
            ],
            **fast,
        )
        retried = jp.jobs.submit(
            name="pooled-retry",
            steps=[{"type": "http", "params": {"url": f"{http_target.url}/flaky/2/{flaky}"}}],
            max_retries=3,
            **fast,
        )
        blocked = jp.jobs.submit(
            name="pooled-cancel",
            steps=[
                {"type": "http", "params": {"url": f"{http_target.url}/block/{gate}"}},
                {"type": "http", "params": {"url": f"{http_target.url}/ok/{after}"}},
            ],
            **fast,
        )
        bulk = jp.jobs.submit_many(  # one COPY, inside the pooler's transaction
            [{"name": f"bulk-{i}", "steps": [{"type": "log", "params": {"message": "x"}}],
              "queue": QUEUE} for i in range(5)]
        )  # fmt: skip

        assert jp.jobs.wait(done.id, timeout=60).status == "succeeded"
        job = jp.jobs.wait(retried.id, timeout=60)
        assert (job.status, job.attempts) == ("succeeded", 3)
        assert http_target.count(f"/flaky/2/{flaky}") == 3
        assert bulk.count == 5
        assert {jp.jobs.wait(i, timeout=60).status for i in bulk.ids} == {"succeeded"}

        wait_for(lambda: http_target.count(f"/block/{gate}") == 1, what="the blocked step")
        assert jp.jobs.cancel(blocked.id).status == "cancelled"
        http_target.release(gate)
        job = wait_for(
            lambda: (j := jp.jobs.get(blocked.id)).executions[0].status != "running" and j,
            what="the attempt to stop",
        )
        assert job.executions[0].status == "cancelled"
        assert http_target.count(f"/ok/{after}") == 0

    # Everything went through the pooler: its clients (gunicorn's threads, the worker's task and
    # heartbeat connections, the dispatcher's queries) shared at most POOL_SIZE sessions.
    [pool] = [p for p in admin(pooled, "SHOW POOLS") if p["database"] == pooled.database]
    assert pool["pool_mode"] == "transaction"
    clients = [c for c in admin(pooled, "SHOW CLIENTS") if c["database"] == pooled.database]
    servers = [s for s in admin(pooled, "SHOW SERVERS") if s["database"] == pooled.database]
    assert len(clients) > POOL_SIZE >= len(servers) > 0
    [stats] = [s for s in admin(pooled, "SHOW STATS") if s["database"] == pooled.database]
    assert stats["total_xact_count"] > 50
    # The pooled URL's application_name reached PostgreSQL through the pooler, and the
    # dispatcher's LISTEN has its own direct session with the direct URL's.
    assert sessions(POOLED_APP)
    assert [q for q in sessions(DIRECT_APP) if q.startswith("LISTEN")]
