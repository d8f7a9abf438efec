"""Beat's rows that the platform owns are read-only in the admin.

django-celery-beat's admin edits any PeriodicTask: the dead-letter purge moved, disabled or deleted
by hand is a state ``dead_letter_schedule_purge`` never makes. Rows of the platform's tasks are
shown and can be run now, but not changed, enabled, disabled or deleted. Operators' own periodic
tasks stay editable. (Schedules hold no beat row since the dispatchers sweep them.)
"""

from __future__ import annotations

from typing import Any

import django_celery_beat.admin as beat_admin
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from deadletter.services import PURGE_TASK

PLATFORM_TASKS = frozenset({PURGE_TASK})


def _owned(task: PeriodicTask | None) -> bool:
    return task is not None and task.task in PLATFORM_TASKS


admin.site.unregister(PeriodicTask)
admin.site.unregister(CrontabSchedule)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _owned(obj) and bool(super().has_change_permission(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _owned(obj) and bool(super().has_delete_permission(request, obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._operators_own(request, queryset).delete()

    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().enable_tasks(  # type: ignore[no-untyped-call]
            request, self._operators_own(request, queryset)
        )

    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().disable_tasks(  # type: ignore[no-untyped-call]
            request, self._operators_own(request, queryset)
        )

    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().toggle_tasks(  # type: ignore[no-untyped-call]
            request, self._operators_own(request, queryset)
        )

    def _operators_own(
        self, request: HttpRequest, queryset: QuerySet[PeriodicTask]
    ) -> QuerySet[PeriodicTask]:
        owned = queryset.filter(task__in=PLATFORM_TASKS).count()
        if owned:
            self.message_user(
                request,
                f"{owned} periodic task(s) belong to the platform (the dead-letter purge) "
                "and were left as they are: the platform creates it after migrate.",
                messages.WARNING,
            )
        return queryset.exclude(task__in=PLATFORM_TASKS)


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(beat_admin.CrontabScheduleAdmin):
    """A crontab of a platform task is read-only too: editing it would move the task."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._platforms(obj) and bool(super().has_change_permission(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._platforms(obj) and bool(super().has_delete_permission(request, obj))

    @staticmethod
    def _platforms(crontab: CrontabSchedule | None) -> bool:
        return (
            crontab is not None
            and PeriodicTask.objects.filter(crontab=crontab, task__in=PLATFORM_TASKS).exists()
        )
