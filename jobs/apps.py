from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        if (
            settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL
            and not settings.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET
        ):
            # Fail at start, not at the first job's end: an unsigned webhook is not an option.
            raise ImproperlyConfigured(
                "JOBPLATFORM_COMPLETION_WEBHOOK_URL is set without "
                "JOBPLATFORM_COMPLETION_WEBHOOK_SECRET, the key its requests are signed with"
            )
        # Built-in steps and the operator's own step modules register themselves on import.
        from jobs.steps import registry

        registry.load_step_modules()
        # After every migrate (and test-database flush): a row per configured queue, for the admin.
        post_migrate.connect(_queue_rows, sender=self)


def _queue_rows(sender: AppConfig, **kwargs: Any) -> None:
    from django.db import connections

    from jobs.models import Queue
    from jobs.services.queues import queue_ensure_rows

    # A partial migrate (to an old migration) may not have created the table yet.
    if Queue._meta.db_table in connections[kwargs["using"]].introspection.table_names():
        queue_ensure_rows()
