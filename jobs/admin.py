from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from executions.models import Execution
from jobplatform.access import owned_by_visible
from jobplatform.auth import admin_actor
from jobplatform.errors import Conflict, DomainError
from jobs import (
    dependencies_admin,  # noqa: F401 - registers the rate limit and breaker pages
    services,
)
from jobs.models import CallbackDelivery, Job, OwnerQuota, Queue
from jobs.redaction import redact_steps
from jobs.schedules import admin as schedules_admin  # noqa: F401 - registers the schedule pages
from jobs.selectors import job_waiting_for, queue_list
from jobs.services import queues


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


class CallbackDeliveryInline(admin.TabularInline[CallbackDelivery, Job]):
    """Every attempt to deliver the job's completion callbacks: read-only, as they happened."""

    model = CallbackDelivery
    extra = 0
    can_delete = False
    fields = (
        "event",
        "target",
        "url",
        "attempt",
        "state",
        "status_code",
        "error",
        "started_at",
        "finished_at",
        "delivery_id",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Part of the job, as GET /jobs/{id}/callbacks/ is: whoever sees the job sees them (no
        # permission of their own for the roles to grant).
        return request.user.has_perm("jobs.view_job")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = ["name", "status", "owner", "queue", "priority", "attempts", "created_at"]
    list_filter = ["status", "queue", "hold"]
    search_fields = ["name", "id", "concurrency_key"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["cancel_jobs"]
    inlines = [ExecutionInline, CallbackDeliveryInline]
    # Operators change jobs through the services (actions), never by editing the row. The steps
    # are shown with their secret params redacted (jobs.redaction), never raw.
    readonly_fields = [
        "waiting_for",
        *(f.name if f.name != "steps" else "pipeline" for f in Job._meta.fields),
    ]
    exclude = ["steps"]

    @admin.display(description="steps")
    def pipeline(self, job: Job) -> str:
        return json.dumps(redact_steps(job.steps), indent=2)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "owner")

    @admin.display(description="Waiting for")
    def waiting_for(self, job: Job) -> str:
        """Why a pending or retrying job has not been released yet, computed now."""
        reasons = job_waiting_for(job=job)
        if not reasons:
            return "-"
        return format_html(
            "<ul style='margin: 0'>{}</ul>",
            format_html_join(
                "",
                "<li><strong>{}</strong>: {}</li>",
                ((r["reason"], r["message"]) for r in reasons),
            ),
        )

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


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin[Queue]):
    """Pause and resume queues (actions), and set their in-flight cap (the form)."""

    list_display = ["name", "paused", "paused_at", "max_in_flight", "in_flight"]
    list_filter = ["paused"]
    actions = ["pause_queues", "resume_queues"]
    fields = ["name", "paused", "paused_at", "max_in_flight", "in_flight", "updated_at"]
    readonly_fields = ["name", "paused", "paused_at", "in_flight", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a row per configured queue is made after migrate

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="in flight (queued + running / cap)")
    def in_flight(self, queue: Queue) -> str:
        [view] = queue_list(names=[queue.name])
        cap = "no cap" if view.max_in_flight is None else f"cap {view.max_in_flight}"
        if view.max_in_flight is not None and view.max_in_flight_is_default:
            cap += " (JOBPLATFORM_QUEUE_MAX_IN_FLIGHT)"
        return f"{view.queued} + {view.running} / {cap}"

    def save_model(
        self, request: HttpRequest, obj: Queue, form: forms.ModelForm[Queue], change: bool
    ) -> None:
        queues.queue_set_max_in_flight(
            name=obj.name, max_in_flight=obj.max_in_flight, actor=admin_actor(request)
        )

    def has_pause_permission(self, request: HttpRequest) -> bool:
        """Operators pause and resume (jobs.pause_queue); the cap is change_queue, admins'."""
        return request.user.has_perm("jobs.pause_queue")

    @admin.action(
        description="Pause the selected queues (running jobs finish)", permissions=["pause"]
    )
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queues.queue_pause(name=name, actor=admin_actor(request))
        self.message_user(request, f"Paused {queryset.count()} queue(s).", messages.SUCCESS)

    @admin.action(description="Resume the selected queues", permissions=["pause"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        for name in queryset.values_list("name", flat=True):
            queues.queue_resume(name=name, actor=admin_actor(request))
        self.message_user(request, f"Resumed {queryset.count()} queue(s).", messages.SUCCESS)


@admin.register(OwnerQuota)
class OwnerQuotaAdmin(admin.ModelAdmin[OwnerQuota]):
    """An owner's fair-share weight and cap on unfinished jobs."""

    list_display = ["owner", "weight", "max_unfinished"]
    search_fields = ["owner__username"]
    autocomplete_fields = ["owner"]

    def save_model(
        self, request: HttpRequest, obj: OwnerQuota, form: forms.ModelForm[OwnerQuota], change: bool
    ) -> None:
        try:
            queues.owner_quota_set(
                owner_id=obj.owner_id,
                weight=obj.weight,
                max_unfinished=obj.max_unfinished,
                actor=admin_actor(request),
            )
        except DomainError as exc:  # the form's validators already refuse these
            self.message_user(request, exc.message, messages.ERROR)
