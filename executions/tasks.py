from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from celery import Task, shared_task
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from executions.pipeline import execution_run

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
    """Run attempt ``attempt`` of a job."""
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
        # The job is RETRYING: the dispatcher releases its next attempt when due, within the
        # job's limits (a queue's cap, its concurrency key, fair share), which a message sent
        # from here would bypass. Celery's Retry, raised without Task.retry's publish, ends this
        # delivery as a retry in Celery's events and Flower; the next one carries retries=n.
        raise Retry(
            f"attempt {attempt} failed; attempt {outcome.next_attempt} is due in "
            f"{outcome.retry_in:.1f}s",
            when=timezone.now() + timedelta(seconds=outcome.retry_in),
        )
