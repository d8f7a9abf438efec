from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from executions.models import Execution
from jobplatform.access import owned_by_visible
from jobplatform.errors import Conflict
from jobs import services
from jobs.models import Job
from jobs.redaction import redact_steps
from jobs.schedules import admin as schedules_admin  # noqa: F401 - registers the schedule pages


class ExecutionInline(admin.TabularInline[Execution, Job]):
    """Every attempt of the job; each links to its page with the step results."""

    model = Execution
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("attempt", "status", "worker", "started_at", "finished_at", "will_retry", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = ["name", "status", "owner", "queue", "priority", "attempts", "created_at"]
    list_filter = ["status", "queue"]
    search_fields = ["name", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["cancel_jobs"]
    inlines = [ExecutionInline]
    # Operators change jobs through the services (actions), never by editing the row. The steps
    # are shown with their secret params redacted (jobs.redaction), never raw.
    readonly_fields = [f.name if f.name != "steps" else "pipeline" for f in Job._meta.fields]
    exclude = ["steps"]

    @admin.display(description="steps")
    def pipeline(self, job: Job) -> str:
        return json.dumps(redact_steps(job.steps), indent=2)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "owner")

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled, finished = 0, 0
        for job_id in queryset.values_list("id", flat=True):
            try:
                cancelled += services.job_cancel(job_id=job_id)
            except Conflict:  # the service's rule: a finished job stays as it is
                finished += 1
        self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS)
        if finished:
            self.message_user(
                request,
                f"{finished} job(s) had already finished: left as they were.",
                messages.INFO,
            )
