"""Probes: ``/healthz`` (the process answers), ``/readyz`` (it can serve: database, broker,
migrations applied), and Prometheus's ``/metrics``.

They are answered by the first middleware, before the host check, sessions, authentication and
the request log: a load balancer, an orchestrator or Prometheus asks every few seconds, under
whatever host name it knows the server by, and those answers must not depend on more than they
report.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobplatform import metrics
from jobplatform.celery import app

logger = logging.getLogger("jobplatform.health")


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # reported, not raised: this is a probe
        return f"error: {type(exc).__name__}"
    return "ok"


def check_broker() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


_migrated = False  # once every migration is applied, they stay applied for this process


def check_migrations() -> str:
    """ "ok" when the database has every migration this code knows (the graph is read once)."""
    global _migrated
    if _migrated:
        return "ok"
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    if plan:
        return f"error: {len(plan)} migrations not applied"
    _migrated = True
    return "ok"


def readiness() -> tuple[bool, dict[str, str]]:
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "migrations": check_migrations(),
    }
    return all(value == "ok" for value in checks.values()), checks


def readiness_response() -> JsonResponse:
    ready, checks = readiness()
    return JsonResponse(
        {"status": "ok" if ready else "degraded", "checks": checks}, status=200 if ready else 503
    )


def metrics_response(request: HttpRequest) -> HttpResponse:
    token = settings.JOBPLATFORM_METRICS_TOKEN
    if token and not hmac.compare_digest(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        return HttpResponse("bearer token required\n", status=401, content_type="text/plain")
    from jobplatform.api.metrics import DatabaseCollector  # the top layer: every app's selectors

    body = generate_latest(metrics.registry(DatabaseCollector()))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class ProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path
        if request.method in ("GET", "HEAD"):
            if path == "/healthz":
                return JsonResponse({"status": "ok"})
            if path == "/readyz":
                return readiness_response()
            if path == "/metrics":
                return metrics_response(request)
        return self.get_response(request)
