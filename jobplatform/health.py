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
from jobplatform.api.exceptions import error_body
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
    """Prometheus's text format, for ``Authorization: Bearer <JOBPLATFORM_METRICS_TOKEN>`` only;
    closed while no token is set, as every other endpoint is to the unauthenticated.

    A token of its own rather than a user's role: Prometheus is a machine, and the only role
    that may see every owner's queues is admin, whose credential would let a leaked Prometheus
    configuration submit, cancel and read every job. This token reads counters and nothing else.
    """
    token = settings.JOBPLATFORM_METRICS_TOKEN
    if not token:
        return JsonResponse(
            error_body(
                "METRICS.DISABLED",
                "/metrics is closed until JOBPLATFORM_METRICS_TOKEN is set",
            ),
            status=403,
        )
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(errors="replace"), f"Bearer {token}".encode()):
        refused = JsonResponse(
            error_body("AUTH.INVALID_CREDENTIALS", "send Authorization: Bearer <metrics token>")
            if given
            else error_body("AUTH.NOT_AUTHENTICATED", "Authorization: Bearer <metrics token>"),
            status=401,
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
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
