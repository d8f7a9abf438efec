from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from executions.models import Execution
from jobs.lifecycle import sql, sql_in


def execution_list_for_job(*, job_id: UUID) -> QuerySet[Execution]:
    """Every attempt of the job, oldest first, with its step results (two queries in all)."""
    return (
        Execution.objects.filter(job_id=job_id).order_by("attempt").prefetch_related("step_results")
    )


@dataclass(frozen=True)
class WorkerSeen:
    """A Celery worker as its attempts show it: its last heartbeat and what it runs now."""

    worker: str
    last_seen: datetime  # its latest heartbeat, or the latest start or end of one of its attempts
    running: int  # attempts it is running now
    recent_attempts: int  # among the last RECENT_ATTEMPTS attempts of the platform
    recent_failed: int


RECENT_ATTEMPTS = 2000

# The running attempts (few; reached through the partial index one_running_execution_per_job)
# and the platform's latest attempts (the primary key's last pages): never a scan of the table.
_WORKERS_SQL = f"""
WITH seen AS (
    SELECT true AS live, worker, heartbeat_at, started_at, finished_at, status
    FROM executions_execution WHERE status = {sql(Execution.Status.RUNNING)}
    UNION ALL
    SELECT false, worker, heartbeat_at, started_at, finished_at, status FROM (
        SELECT worker, heartbeat_at, started_at, finished_at, status
        FROM executions_execution ORDER BY id DESC LIMIT %(recent)s
    ) AS latest
)
SELECT worker,
       max(GREATEST(heartbeat_at, started_at, finished_at)),
       count(*) FILTER (WHERE live),
       count(*) FILTER (WHERE NOT live),
       count(*) FILTER (WHERE NOT live
                        AND status IN {sql_in([Execution.Status.FAILED, Execution.Status.LOST])})
FROM seen
GROUP BY worker
ORDER BY 2 DESC
"""


def worker_list() -> list[WorkerSeen]:
    """Workers seen in the running and the latest attempts, most recently seen first (one query).

    A worker that ran nothing lately is not listed: Flower, or ``celery inspect ping``, lists
    every worker connected to the broker.
    """
    with connection.cursor() as cursor:
        cursor.execute(_WORKERS_SQL, {"recent": RECENT_ATTEMPTS})
        return [WorkerSeen(*row) for row in cursor.fetchall()]
