from __future__ import annotations

import logging
from uuid import UUID

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, close_old_connections

from executions.pipeline import execution_run
from jobplatform import brokers

logger = logging.getLogger("jobplatform.executions")


@shared_task(
    name="executions.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the job's own policy, enforced from the database, bounds retries
)
def run_job(self: Task[[str, int], None], job_id: str, attempt: int) -> None:
    """Run attempt ``attempt`` of a job; on a transient failure, publish the next attempt."""
    try:
        outcome = execution_run(
            job_id=UUID(job_id),
            attempt=attempt,
            delivery_id=self.request.id or "",
            worker=self.request.hostname or "",
        )
    except (OperationalError, InterfaceError) as exc:
        # PostgreSQL is unreachable. Drop the broken connection and deliver this same message
        # again later: if the attempt was never claimed it starts then; if it was, the claim finds
        # nothing and the reaper hands the silent attempt back to the retry path.
        close_old_connections()
        delay = min(30, 2 ** min(self.request.retries, 5))
        logger.warning(
            "job %s attempt %d: database unavailable, again in %ds", job_id, attempt, delay
        )
        raise self.retry(exc=exc, countdown=delay) from exc
    if outcome.retry_in is not None:
        # Rounded up to whole seconds on RabbitMQ's quorum queues, whose delay queues count them.
        countdown = brokers.message_countdown(self.app, outcome.retry_in)
        raise self.retry(args=(job_id, outcome.next_attempt), countdown=countdown)
