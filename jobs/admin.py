"""Jobs in the admin: a console to find a job and read what happened to it, never to edit it.

Rows change only through the services (``jobplatform.admin_tools``): cancel is an action that
calls ``job_cancel`` and leaves an audit row; a failed job is retried through its dead letter.
"""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from deadletter.models import DeadLetterAction
from executions.models import Execution
from executions.selectors import execution_list_for_job
from jobplatform.access import owned_by_visible
from jobplatform.admin_tools import NoteActionForm, ServicesOnlyAdmin, pre
from jobplatform.auth import AuthenticatedHttpRequest, admin_actor
from jobplatform.errors import DomainError
from jobplatform.models import AuditEvent
from jobs import (
    dependencies_admin,  # noqa: F401 - registers the rate limit and breaker pages
    services,
)
from jobs.models import CallbackDelivery, Job, OwnerQuota, Queue
from jobs.redaction import redact_steps
from jobs.schedules import admin as schedules_admin  # noqa: F401 - registers the schedule pages
from jobs.selectors import job_waiting_for, queue_list
from jobs.services import queues
from jobs.steps.http import redact_url

TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Error text is searched among jobs that have one to show: few, reached by job_status_created.
WITH_ERRORS = (Job.Status.FAILED, Job.Status.RETRYING, Job.Status.CANCELLED)


class CallbackDeliveryInline(admin.TabularInline[CallbackDelivery, Job]):
    """Every attempt to deliver the job's completion callbacks: read-only, as they happened."""

    model = CallbackDelivery
    extra = 0
    can_delete = False
    fields = (
        "event",
        "target",
        "shown_url",
        "attempt",
        "state",
        "status_code",
        "error",
        "started_at",
        "finished_at",
        "delivery_id",
    )
    readonly_fields = fields

    @admin.display(description="URL")
    def shown_url(self, delivery: CallbackDelivery) -> str:
        return redact_url(delivery.url)  # as the API shows it

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Part of the job, as GET /jobs/{id}/callbacks/ is: whoever sees the job sees them (no
        # permission of their own for the roles to grant).
        return request.user.has_perm("jobs.view_job")


@admin.register(Job)
class JobAdmin(ServicesOnlyAdmin, admin.ModelAdmin[Job]):
    list_display = [
        "name", "status", "queue", "owner", "priority", "attempts", "created_at", "finished_at",
    ]  # fmt: skip
    list_filter = ["status", "queue", "hold"]
    search_help_text = (
        "A job id, a Celery task id (of any attempt), a trace id, a job name or concurrency "
        "key (exact), or words of the error of a failed, retrying or cancelled job."
    )
    # Searched by get_search_results below; the admin shows the box when this is not empty.
    search_fields = ["name"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    show_full_result_count = False  # a COUNT(*) over every job on each page: not needed
    actions = ["cancel_jobs"]
    # The attempts are the timeline below; the callbacks' deliveries as they happened.
    inlines = [CallbackDeliveryInline]
    action_form = NoteActionForm
    fieldsets = [
        (None, {"fields": ["name", "id", "status", "queue", "priority", "owner", "trace_id"]}),
        (
            "Times (UTC)",
            {
                "fields": [
                    "created_at",
                    "run_at",
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "next_attempt_at",
                    "updated_at",
                ]
            },
        ),
        (
            "What happened",
            {
                "fields": [
                    "waiting_for",
                    "hold",
                    "held_by",
                    "dead_letter",
                    "timeline",
                    "audit_trail",
                ]
            },
        ),
        (
            "The job",
            {
                "fields": [
                    "pipeline",
                    "job_input",
                    "result_value",
                    "error",
                    "attempts",
                    "next_step",
                    "retry_policy",
                    "timeout",
                    "concurrency_key",
                    "max_concurrency",
                    "rate_limit",
                    "callback",
                    "schedule",
                    "scheduled_for",
                    "idempotency_key",
                ]
            },
        ),
    ]
    readonly_fields = [
        "name", "id", "status", "queue", "priority", "owner", "trace_id", "created_at", "run_at",
        "queued_at", "started_at", "finished_at", "next_attempt_at", "updated_at", "waiting_for",
        "hold", "held_by", "concurrency_key", "max_concurrency", "rate_limit", "dead_letter",
        "timeline", "audit_trail", "pipeline", "job_input", "result_value", "error", "attempts",
        "next_step", "retry_policy", "timeout", "callback", "schedule", "scheduled_for",
        "idempotency_key",
    ]  # fmt: skip

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """Each kind of term by an index: a UUID is a job id or an attempt's Celery task id, 32
        hex digits a trace id, anything else a name or concurrency key (exact) or
        words of a job's error."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            as_uuid = UUID(term)
        except ValueError:
            as_uuid = None
        if as_uuid is not None:
            by_task = Execution.objects.filter(delivery_id=term).values("job_id")
            match = Q(id=as_uuid) | Q(id__in=by_task)
            if TRACE_ID.fullmatch(term):
                match |= Q(trace_id=term)
            return queryset.filter(match), False
        errors = Q(status__in=WITH_ERRORS, last_error__message__icontains=term)
        return queryset.filter(Q(name=term) | Q(concurrency_key=term) | errors), False

    @admin.display(description="steps")
    def pipeline(self, job: Job) -> SafeString:
        return pre(redact_steps(job.steps))  # secret params never shown (jobs.redaction)

    @admin.display(description="callback URL")
    def callback(self, job: Job) -> str:
        # As the API shows it: no userinfo, secret-looking query values redacted.
        return redact_url(job.callback_url) if job.callback_url else "(none)"

    @admin.display(description="input")
    def job_input(self, job: Job) -> SafeString:
        return pre(job.input)

    @admin.display(description="result")
    def result_value(self, job: Job) -> SafeString:
        return pre(job.result)

    @admin.display(description="last error")
    def error(self, job: Job) -> SafeString:
        if not job.last_error:
            return pre("(none)")
        return _error_html(job.last_error)

    @admin.display(description="retry policy")
    def retry_policy(self, job: Job) -> str:
        return (
            f"max_retries {job.max_retries}, backoff {job.retry_backoff:g}s doubling up to "
            f"{job.retry_backoff_max:g}s{', jittered' if job.retry_jitter else ''}; "
            f"the budget counts from attempt {job.retry_base + 1}"
        )

    @admin.display(description="dead letters")
    def dead_letter(self, job: Job) -> str:
        """Each time the job failed, oldest first; an open one is where it is retried."""
        entries = job.dead_letters.order_by("id").values_list("id", "state")
        links = format_html_join(
            " → ",
            '<a href="{}">#{} {}</a>',
            ((reverse("admin:deadletter_deadletter_change", args=[i]), i, s) for i, s in entries),
        )
        return links or "-"

    @admin.display(description="attempts (times UTC)")
    def timeline(self, job: Job) -> SafeString:
        executions = list(execution_list_for_job(job_id=job.id))
        return SafeString(
            render_to_string(
                "jobs/timeline.html",
                {"job": job, "attempts": [_attempt(e) for e in executions]},
            )
        )

    @admin.display(description="audit trail")
    def audit_trail(self, job: Job) -> SafeString:
        rows: list[tuple[Any, str, str, str, Any]] = [
            (
                a.created_at,
                a.action,
                a.actor_name or "the platform",
                a.details.get("note", ""),
                {k: v for k, v in a.details.items() if k != "note"},
            )
            for a in AuditEvent.objects.filter(subject=services.job_audit_subject(job.id))
        ]
        rows += [
            (a.created_at, f"{a.kind} of dead letter #{a.dead_letter_id}", a.actor_name, a.note,
             a.details)
            for a in DeadLetterAction.objects.filter(dead_letter__job=job)
        ]  # fmt: skip
        rows.sort(key=lambda row: row[0])
        return SafeString(render_to_string("jobs/audit_trail.html", {"rows": rows}))

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
    def cancel_jobs(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        note = request.POST.get("note", "")
        cancelled = services.jobs_cancel(job_ids=ids, actor=request.user, note=note)
        self.message_user(request, f"Cancelled {len(cancelled)} job(s).", messages.SUCCESS)
        if len(cancelled) < len(ids):
            self.message_user(
                request,
                f"{len(ids) - len(cancelled)} job(s) had already finished: left as they were.",
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


def _error_html(error: dict[str, Any]) -> SafeString:
    return SafeString(render_to_string("jobs/error.html", {"error": error}))


def _attempt(execution: Execution) -> dict[str, Any]:
    """One attempt as the timeline shows it."""
    duration = (
        (execution.finished_at - execution.started_at).total_seconds()
        if execution.finished_at
        else None
    )
    return {
        "execution": execution,
        "duration": duration,
        "retry_in": (
            (execution.retry_at - execution.finished_at).total_seconds()
            if execution.retry_at and execution.finished_at
            else None
        ),
        "error": _error_html(execution.error) if execution.error else None,
        "steps": [
            {
                "result": step,
                "output": json.dumps(step.output, indent=2, sort_keys=True)[:4000],
                "error": _error_html(step.error) if step.error else None,
            }
            for step in execution.step_results.all()
        ],
    }
