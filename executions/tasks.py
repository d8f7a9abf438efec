from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from celery.exceptions import Ignore, Retry
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from executions import observe
from executions.models import Execution
from executions.pipeline import execution_run, executions_run
from executions.services.claim import ClaimRequest
from executions.services.outcomes import RunOutcome
from jobplatform import logs

logger = logging.getLogger("jobplatform.executions")


class AttemptFailed(Exception):
    """The attempt failed and the job is FAILED, dead-lettered: the task ends FAILURE.

    Only what Celery reports changes: a task that raises is acknowledged like one that returns
    (``task_acks_on_failure_or_timeout``, pinned in the settings), so the message does not come
    back. Declared in ``throws``: Celery logs it as expected, without a traceback.
    """

    def __init__(self, job_id: str, attempt: int) -> None:
        # Its arguments are its args: the pool process pickles the exception, and one that does
        # not unpickle reaches Celery as an UnpickleableExceptionWrapper, which ``throws`` does
        # not match (logged as unexpected, at ERROR, with a traceback).
        super().__init__(job_id, attempt)
        self.job_id, self.attempt = job_id, attempt

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt} failed: dead-lettered"


class RunJobTask(Task[[str, int], str]):
    # Celery's default strategy, with the message's trace and job ids bound while the worker's
    # main process handles it: its "received" line carries them too.
    Strategy = "jobplatform.logs:traced_strategy"


@shared_task(
    base=RunJobTask,
    name="executions.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the job's own policy, enforced from the database, bounds retries
    throws=(AttemptFailed,),
)
def run_job(self: RunJobTask, job_id: str, attempt: int) -> str:
    """Run attempt ``attempt`` of a job.

    The task's state tells the attempt's outcome (Flower reads it from the task events):
    SUCCESS (succeeded, or a duplicate message that claimed nothing; the result says which),
    RETRY (another attempt follows, released by the dispatcher when due), FAILURE (the job
    failed: :class:`AttemptFailed`), REVOKED (the job was cancelled, or the attempt reaped,
    while it ran).
    """
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
    if outcome.status == Execution.Status.FAILED:
        raise AttemptFailed(job_id, attempt)
    if outcome.status == Execution.Status.CANCELLED:
        _announce_revoked(self)
        # Ignore: Celery acknowledges the message (as on success) and sends no other event, so
        # the task stays REVOKED.
        raise Ignore()
    return outcome.status


@shared_task(
    name="executions.run_jobs",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def run_jobs(
    self: Task[[list[list[str | int]]], dict[str, int]], jobs: list[list[str | int]]
) -> dict[str, int]:
    """Run several jobs, each ``[job id, attempt]``, in turn: the dispatcher's message under
    backlog (docs/architecture.md#several-jobs-per-message).

    Each job is what a run_job message would make of it: its own claim (fenced by its attempt,
    so a second delivery of this message claims only the jobs nobody claimed yet), heartbeat,
    deadlines, cancellation, step results and outcome, committed before the next job starts and
    so before the message is acknowledged. If the worker dies mid-batch, the job it was running
    is reaped as lost like any attempt, and the jobs it had not claimed are still QUEUED for the
    same attempt: the message's redelivery, or the dispatcher's re-publication of lost messages,
    starts them without spending an attempt.

    The task's state is the message's, not a job's: SUCCESS once every job ended, whatever its
    outcome; the result counts the outcomes (Flower shows it), and each job's outcome is a log
    line carrying its job id, attempt and trace id (the ``trace_ids`` header, one per job).
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
    trace_ids = self.request.get("trace_ids") or []
    outcomes: Counter[str] = Counter()
    runs = executions_run(requests)
    try:
        # A job that fails transiently is left RETRYING: the dispatcher releases its next
        # attempt when due, as after run_job (nothing to publish here).
        for index, request in enumerate(requests):
            # Bound before the job runs (the generator runs it when asked for its outcome).
            _bind_job(request, trace_ids[index] if index < len(trace_ids) else "")
            _, outcome = next(runs)
            outcomes[_job_ended(request, outcome)] += 1
    except (OperationalError, InterfaceError) as exc:
        # The whole message again: the jobs it already ran claim nothing the second time.
        raise _again_later(self, exc, f"batch {delivery_id}") from exc
    return dict(outcomes)


def _bind_job(request: ClaimRequest, trace_id: str) -> None:
    """The log context of a batch's job: its ids, none of the job before it."""
    logs.unbind("trace_id", "step", "step_type")
    logs.bind(job_id=str(request.job_id), attempt=request.attempt)
    if trace_id:
        logs.bind(trace_id=trace_id)


def _job_ended(request: ClaimRequest, outcome: RunOutcome) -> str:
    """A batch's job's outcome, logged as run_job's task state would tell it."""
    label = observe.outcome_label(outcome)
    logger.info("job %s attempt %d: %s", request.job_id, request.attempt, label)
    return label


def _again_later(self: Task[..., Any], exc: Exception, what: str) -> BaseException:
    """PostgreSQL is unreachable: drop the broken connection and deliver this same message again
    later. A job it never claimed starts then; one it claimed claims nothing, and the reaper
    hands the silent attempt back to the retry path."""
    close_old_connections()
    delay = min(30, 2 ** min(self.request.retries, 5))
    logger.warning("%s: database unavailable, again in %ds", what, delay)
    return self.retry(exc=exc, countdown=delay)


def _announce_revoked(task: RunJobTask) -> None:
    """The task-revoked event Celery sends for a revoked task: Flower shows REVOKED."""
    try:
        task.send_event("task-revoked", retry=False, terminated=False, signum=None, expired=False)
    except Exception:  # an event is for monitoring: losing it changes nothing else
        logger.warning("could not send the task-revoked event", exc_info=True)
