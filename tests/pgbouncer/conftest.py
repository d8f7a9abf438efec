"""The platform behind PgBouncer in transaction mode (tests/servers.py): gunicorn, a worker and a
dispatcher serving the queue ``pgbouncer`` reach the test database through the pooler, over
``POOL_SIZE`` server connections; the dispatcher's LISTEN goes straight to PostgreSQL
(DATABASE_DIRECT_URL). Each URL carries an application_name, so that PostgreSQL shows which
sessions came which way, and that the options of a URL reach the connections made from it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import Platform, running_platform, running_web
from tests.servers import PgBouncer

QUEUE = "pgbouncer"
POOL_SIZE = 4
POOLED_APP = "jp-pooled"
DIRECT_APP = "jp-direct"


@dataclass
class PooledPlatform:
    bouncer: PgBouncer
    platform: Platform
    web: str  # the root URL of gunicorn
    database: str


@pytest.fixture(scope="module")
def pooled(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PooledPlatform]:
    db = settings.DATABASES["default"]  # after django_db_setup: the test database
    logs = tmp_path_factory.mktemp("pgbouncer")
    bouncer = PgBouncer(
        base=logs / "bouncer",
        server_host=db["HOST"],
        server_port=int(db["PORT"]),
        user=db["USER"],
        password=db.get("PASSWORD") or "",
        pool_size=POOL_SIZE,
    )
    direct = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        "DATABASE_URL": bouncer.url(db["NAME"], application_name=POOLED_APP),
        "DATABASE_DIRECT_URL": f"{direct}?application_name={DIRECT_APP}",
        # What a transaction-mode pooler asks for (docs/deploy.md#behind-a-connection-pooler).
        "DATABASE_SERVER_SIDE_CURSORS": "0",
        "DATABASE_PREPARED_STATEMENTS": "1" if bouncer.prepared_statements else "0",
    }
    if db.get("PASSWORD"):
        env["DATABASE_PASSWORD"] = db["PASSWORD"]
    bouncer.start()
    try:
        with (
            running_platform(
                logs,
                queues=QUEUE,
                env=env,
                name="test-worker-pgbouncer",
            ) as platform,
            running_web(logs / "gunicorn.log", env=env) as web,
        ):
            yield PooledPlatform(bouncer=bouncer, platform=platform, web=web, database=db["NAME"])
    finally:
        bouncer.stop()
