from __future__ import annotations

from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings

from deadletter import services
from deadletter.webhooks import WebhookDeliveryError


@shared_task(
    name=services.NOTIFY_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    # Bounded: 8 retries, 2 s doubling up to 10 min with jitter (about 25 min in all), then the
    # notification is given up and logged; the dead letter itself is safe in the database.
    autoretry_for=(WebhookDeliveryError,),
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def notify_webhook(self: Task[[int], None], dead_letter_id: int) -> None:
    """POST a new dead letter to the configured webhook; retried while the receiver is down."""
    services.dead_letter_notify(dead_letter_id=dead_letter_id)


@shared_task(name=services.PURGE_TASK, ignore_result=True)
def purge() -> int:
    """Beat, daily: delete closed dead letters past the retention period."""
    days = settings.JOBPLATFORM_DEADLETTER_RETENTION_DAYS
    return services.dead_letter_purge(older_than=timedelta(days=days))
