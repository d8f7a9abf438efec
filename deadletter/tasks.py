from __future__ import annotations

from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings

from deadletter import services
from jobplatform import webhooks


@shared_task(
    name=services.NOTIFY_TASK,
    bind=True,
    ignore_result=True,
    # Bounded (webhooks.RETRY_OPTIONS), then the notification is given up and logged; the dead
    # letter itself is safe in the database.
    **webhooks.RETRY_OPTIONS,
)
def notify_webhook(self: Task[[int], None], dead_letter_id: int) -> None:
    """POST a new dead letter to the configured webhook; retried while the receiver is down."""
    services.dead_letter_notify(dead_letter_id=dead_letter_id)


@shared_task(name=services.PURGE_TASK, ignore_result=True)
def purge() -> int:
    """Beat, daily: delete closed dead letters past the retention period."""
    days = settings.JOBPLATFORM_DEADLETTER_RETENTION_DAYS
    return services.dead_letter_purge(older_than=timedelta(days=days))
