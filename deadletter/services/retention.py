"""Retention: closed entries are purged after a while, on a daily beat schedule."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from deadletter.models import DeadLetter

logger = logging.getLogger("jobplatform.deadletter")

State = DeadLetter.State

# Open entries are never purged automatically.
PURGEABLE = frozenset({State.RETRIED, State.DISMISSED})
PURGE_TASK = "deadletter.purge"
PURGE_BATCH = 1000


def dead_letter_purge(*, older_than: timedelta, batch_size: int = PURGE_BATCH) -> int:
    """Delete retried and dismissed entries closed more than ``older_than`` ago; return how many.

    Open entries are never purged. Deletes in batches, each its own transaction, so a large purge
    neither holds locks for long nor builds one huge transaction.
    """
    cutoff = timezone.now() - older_than
    purged = 0
    while True:
        with transaction.atomic():
            ids = list(
                DeadLetter.objects.filter(state__in=PURGEABLE, resolved_at__lt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            # Re-checked in the DELETE: an entry cannot reopen, but the rule stays in one place.
            _, per_model = DeadLetter.objects.filter(
                id__in=ids, state__in=PURGEABLE, resolved_at__lt=cutoff
            ).delete()
            purged += per_model.get(DeadLetter._meta.label, 0)
        if len(ids) < batch_size:
            break
    if purged:
        logger.info("purged %d dead letters closed before %s", purged, cutoff.isoformat())
    return purged


def dead_letter_schedule_purge() -> None:
    """Make sure beat runs the purge daily: create its PeriodicTask when missing.

    An existing one is left alone (an operator may have moved or disabled it in the admin). Written
    with save(), which tells beat to reload; it gets a crontab of its own, so editing another
    schedule never moves it (django-celery-beat's warning about shared schedule objects).
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    if PeriodicTask.objects.filter(name=PURGE_TASK).exists():
        return
    crontab = CrontabSchedule(
        minute="17", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    crontab.save()
    task = PeriodicTask(
        name=PURGE_TASK,
        task=PURGE_TASK,
        crontab=crontab,
        description="Delete dead letters retried or dismissed more than "
        "JOBPLATFORM_DEADLETTER_RETENTION_DAYS ago (open ones are kept).",
    )
    task.save()
