from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from celery import Task, shared_task
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from executions.pipeline import execution_run, executions_run
from executions.services.claim import ClaimRequest

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
        raise _again_later(self, exc, f"job {job_id} attempt {attempt}") from exc
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


@shared_task(
    name="executions.run_jobs",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def run_jobs(self: Task[[list[list[str | int]]], None], jobs: list[list[str | int]]) -> None:
    """Run several jobs, each ``[job id, attempt]``, in turn: the dispatcher's message under
    backlog (docs/architecture.md#several-jobs-per-message).

    Each job is what a run_job message would make of it: its own claim (fenced by its attempt,
    so a second delivery of this message claims only the jobs nobody claimed yet), heartbeat,
    deadlines, cancellation, step results and outcome, committed before the next job starts and
    so before the message is acknowledged. If the worker dies mid-batch, the job it was running
    is reaped as lost like any attempt, and the jobs it had not claimed are still QUEUED for the
    same attempt: the message's redelivery, or the dispatcher's re-publication of lost messages,
    starts them without spending an attempt.
    """
    delivery_id = self.request.id or ""
    worker = self.request.hostname or ""
    logger.info(
        "batch %s: %d jobs: %s",
        delivery_id,
        len(jobs),
        " ".join(f"{job_id}:{attempt}" for job_id, attempt in jobs),
    )
    requests = [
        ClaimRequest(UUID(str(job_id)), int(attempt), delivery_id, worker)
        for job_id, attempt in jobs
    ]
    try:
        # A job that fails transiently is left RETRYING: the dispatcher releases its next
        # attempt when due, as after run_job (nothing to publish here).
        for _ in executions_run(requests):
            pass
    except (OperationalError, InterfaceError) as exc:
        # The whole message again: the jobs it already ran claim nothing the second time.
        raise _again_later(self, exc, f"batch {delivery_id}") from exc


def _again_later(self: Task[..., None], exc: Exception, what: str) -> BaseException:
    """PostgreSQL is unreachable: drop the broken connection and deliver this same message again
    later. A job it never claimed starts then; one it claimed claims nothing, and the reaper
    hands the silent attempt back to the retry path."""
    close_old_connections()
    delay = min(30, 2 ** min(self.request.retries, 5))
    logger.warning("%s: database unavailable, again in %ds", what, delay)
    return self.retry(exc=exc, countdown=delay)
