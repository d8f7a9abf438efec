from __future__ import annotations

from uuid import UUID

from celery import Task, shared_task

from jobplatform import webhooks
from jobs.callbacks.services import DELIVER_TASK, callback_deliver


@shared_task(
    name=DELIVER_TASK,
    bind=True,
    ignore_result=True,
    # Bounded (webhooks.RETRY_OPTIONS): the last attempt's row then says failed.
    **webhooks.RETRY_OPTIONS,
)
def deliver_callback(
    self: Task[[str, str, str, str], None], delivery_id: str, job_id: str, event: str, target: str
) -> None:
    """POST a job's end to one target (its callback_url, or the operator's webhook)."""
    callback_deliver(
        delivery_id=UUID(delivery_id),
        job_id=UUID(job_id),
        event=event,
        target=target,
        last_try=self.request.retries >= (self.max_retries or 0),
    )
