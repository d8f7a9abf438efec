from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_migrate


class DeadLetterConfig(AppConfig):
    name = "deadletter"
    verbose_name = "Dead letters"

    def ready(self) -> None:
        if (
            settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL
            and not settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET
        ):
            # Fail at start, not at the first dead letter: an unsigned webhook is not an option.
            raise ImproperlyConfigured(
                "JOBPLATFORM_DEADLETTER_WEBHOOK_URL is set without "
                "JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET, the key its requests are signed with"
            )
        # After every migrate (and test-database flush), so the purge is always scheduled.
        post_migrate.connect(_schedule_purge, sender=self)


def _schedule_purge(sender: AppConfig, **kwargs: Any) -> None:
    from django.db import connections
    from django_celery_beat.models import PeriodicTask

    from deadletter.services import dead_letter_schedule_purge

    # A partial migrate (one app, to an old migration) may not have created beat's tables yet.
    if PeriodicTask._meta.db_table in connections[kwargs["using"]].introspection.table_names():
        dead_letter_schedule_purge()
