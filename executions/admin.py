from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from executions.models import Execution, StepResult
from jobplatform.access import owned_by_visible


class StepResultInline(admin.TabularInline[StepResult, Execution]):
    model = StepResult
    extra = 0
    can_delete = False
    readonly_fields = ["index", "type", "status", "output", "error", "started_at", "duration_ms"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin[Execution]):
    list_display = ["job", "attempt", "status", "worker", "started_at", "finished_at"]
    list_filter = ["status"]
    # "=delivery_id": Flower's task id, matched exactly (by its index).
    search_fields = ["=delivery_id", "job__id", "job__name", "worker"]
    list_select_related = ["job"]
    readonly_fields = [f.name for f in Execution._meta.fields]
    inlines = [StepResultInline]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "job__owner")
