"""What every job service shares: the dispatch channel and how to wake the dispatchers."""

from __future__ import annotations

from django.db import connection

# Services NOTIFY this channel in their transaction; PostgreSQL delivers it at commit, so a
# dispatcher never wakes for a row it cannot see yet.
DISPATCH_CHANNEL = "jobplatform_dispatch"
RUN_JOB_TASK = "executions.run_job"
# One message that starts several due jobs of one queue in turn (a backlog: docs/architecture.md).
RUN_JOBS_TASK = "executions.run_jobs"


def notify_dispatchers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [DISPATCH_CHANNEL])
