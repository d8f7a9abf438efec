from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deadletter.models import DeadLetter, DeadLetterAction
from deadletter.services import PURGE_TASK, dead_letter_purge, dead_letter_schedule_purge
from tests.deadletter.factories import DeadLetterFactory

pytestmark = pytest.mark.django_db


def test_purge_deletes_closed_entries_past_the_retention_and_never_open_ones(admin):
    now = timezone.now()
    long_ago = now - timedelta(days=31)
    old_retried = DeadLetterFactory(state="retried", resolved_at=long_ago)
    old_dismissed = DeadLetterFactory(state="dismissed", resolved_at=long_ago)
    DeadLetterAction.objects.create(dead_letter=old_dismissed, kind="dismiss")
    recent = DeadLetterFactory(state="dismissed", resolved_at=now - timedelta(days=29))
    ancient_open = DeadLetterFactory(created_at=now - timedelta(days=400))
    purged = dead_letter_purge(older_than=timedelta(days=30), batch_size=1)
    assert purged == 2
    assert set(DeadLetter.objects.values_list("id", flat=True)) == {recent.id, ancient_open.id}
    assert not DeadLetterAction.objects.exists()  # the trail goes with its entry
    assert not DeadLetter.objects.filter(id__in=[old_retried.id, old_dismissed.id]).exists()


def test_migrate_schedules_the_daily_purge_in_beat():
    task = PeriodicTask.objects.get(name=PURGE_TASK)
    assert (task.task, task.enabled) == ("deadletter.purge", True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month, crontab.day_of_week) == (
        "17",
        "3",
        "*",
        "*",
    )
    assert str(crontab.timezone) == "UTC"


def test_scheduling_again_leaves_an_operators_changes_alone():
    task = PeriodicTask.objects.get(name=PURGE_TASK)
    task.enabled = False
    task.save()
    dead_letter_schedule_purge()
    assert PeriodicTask.objects.filter(name=PURGE_TASK).count() == 1
    assert PeriodicTask.objects.get(name=PURGE_TASK).enabled is False
