"""Attempts in the admin, read-only: an attempt is written by its worker and the reaper only.

Deleting a running attempt's row would leave its job RUNNING with no attempt (the reaper ends
such a job, but the admin offers no way to make one).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from executions.models import Execution, StepResult
from jobplatform.access import owned_by_visible
from jobplatform.admin_tools import ServicesOnlyAdmin, pre


class StepResultInline(admin.TabularInline[StepResult, Execution]):
    model = StepResult
    extra = 0
    can_delete = False
    fields = ("index", "type", "status", "started_at", "duration_ms", "output_text", "error_text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="output")
    def output_text(self, step: StepResult) -> SafeString:
        return pre(step.output)

    @admin.display(description="error")
    def error_text(self, step: StepResult) -> SafeString | str:
        return pre(step.error) if step.error else "-"


@admin.register(Execution)
class ExecutionAdmin(ServicesOnlyAdmin, admin.ModelAdmin[Execution]):
    list_display = [
        "job_link", "attempt", "status", "worker", "started_at", "finished_at", "delivery_id",
    ]  # fmt: skip
    list_filter = ["status"]
    # "=delivery_id": Flower's task id, matched exactly (by its index). A job's id or name is
    # the job list's search.
    search_fields = ["=delivery_id", "=worker"]
    search_help_text = "A Celery task id, or a worker's name (exact)."
    list_select_related = ["job"]
    show_full_result_count = False
    fields = (
        "job_link", "attempt", "status", "worker", "delivery_id", "started_at", "heartbeat_at",
        "finished_at", "will_retry", "retry_at", "error_text",
    )  # fmt: skip
    readonly_fields = fields
    inlines = [StepResultInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "job__owner")

    @admin.display(description="job", ordering="job__name")
    def job_link(self, execution: Execution) -> str:
        url = reverse("admin:jobs_job_change", args=[execution.job_id])
        return format_html('<a href="{}">{}</a>', url, execution.job.name)

    @admin.display(description="error")
    def error_text(self, execution: Execution) -> SafeString | str:
        return pre(execution.error) if execution.error else "-"
