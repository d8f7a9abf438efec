from __future__ import annotations

from uuid import UUID

from celery import Task, shared_task

from executions.services import execution_run


@shared_task(
    name="executions.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the job's own policy, enforced from the database, bounds retries
)
def run_job(self: Task, job_id: str, attempt: int) -> None:
    """Run attempt ``attempt`` of a job; on a transient failure, publish the next attempt."""
    outcome = execution_run(
        job_id=UUID(job_id),
        attempt=attempt,
        delivery_id=self.request.id or "",
        worker=self.request.hostname or "",
    )
    if outcome.retry_in is not None:
        raise self.retry(args=[job_id, outcome.next_attempt], countdown=outcome.retry_in)
