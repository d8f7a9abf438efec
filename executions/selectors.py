from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from executions.models import Execution
from jobplatform.models import ProcessRole
from jobs.lifecycle import sql, sql_in


def execution_list_for_job(*, job_id: UUID) -> QuerySet[Execution]:
    """Every attempt of the job, oldest first, with its step results (two queries in all)."""
    return (
        Execution.objects.filter(job_id=job_id).order_by("attempt").prefetch_related("step_results")
    )


@dataclass(frozen=True)
class WorkerSeen:
    """A Celery worker as its liveness row and its attempts show it."""

    worker: str
    last_seen: datetime  # its latest liveness beat, attempt heartbeat, or attempt start or end
    running: int  # attempts it is running now
    recent_attempts: int  # among the last RECENT_ATTEMPTS attempts of the platform
    recent_failed: int
    beat_at: datetime | None  # its main process's liveness row (jobplatform.liveness), if any


RECENT_ATTEMPTS = 2000

# The running attempts (few; reached through the partial index one_running_execution_per_job),
# the platform's latest attempts (the primary key's last pages) and the workers' liveness rows
# (one per worker process): never a scan of the table. A worker that beats but ran nothing lately
# (idle) is listed by its liveness row alone.
_WORKERS_SQL = f"""
WITH seen AS (
    SELECT true AS live, worker, heartbeat_at, started_at, finished_at, status
    FROM executions_execution WHERE status = {sql(Execution.Status.RUNNING)}
    UNION ALL
    SELECT false, worker, heartbeat_at, started_at, finished_at, status FROM (
        SELECT worker, heartbeat_at, started_at, finished_at, status
        FROM executions_execution ORDER BY id DESC LIMIT %(recent)s
    ) AS latest
), attempts AS (
    SELECT worker,
           max(GREATEST(heartbeat_at, started_at, finished_at)) AS last_seen,
           count(*) FILTER (WHERE live) AS running,
           count(*) FILTER (WHERE NOT live) AS recent,
           count(*) FILTER (WHERE NOT live AND status IN
                            {sql_in([Execution.Status.FAILED, Execution.Status.LOST])}) AS failed
    FROM seen
    GROUP BY worker
), beats AS (
    SELECT name, beat_at FROM jobplatform_processheartbeat WHERE role = %(role)s
)
SELECT coalesce(a.worker, b.name), GREATEST(a.last_seen, b.beat_at),
       coalesce(a.running, 0), coalesce(a.recent, 0), coalesce(a.failed, 0), b.beat_at
FROM attempts AS a FULL OUTER JOIN beats AS b ON b.name = a.worker
ORDER BY 2 DESC
"""


def worker_list() -> list[WorkerSeen]:
    """Workers with a liveness row or seen in the running and the latest attempts, most recently
    seen first (one query).

    A worker's liveness row stays a day after it stopped (``jobplatform.liveness``); Flower, or
    ``celery inspect ping``, lists every worker connected to the broker.
    """
    with connection.cursor() as cursor:
        cursor.execute(_WORKERS_SQL, {"recent": RECENT_ATTEMPTS, "role": ProcessRole.WORKER})
        return [WorkerSeen(*row) for row in cursor.fetchall()]
