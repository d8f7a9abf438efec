from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from deadletter import services
from deadletter.models import DeadLetter, DeadLetterAction
from jobplatform.access import owned_by_visible
from jobplatform.auth import AuthenticatedHttpRequest


class NoteActionForm(ActionForm):
    """The action bar gets a note field: why the selection is retried or dismissed."""

    note = forms.CharField(required=False, max_length=2000, label="Note")


class ActionInline(admin.TabularInline[DeadLetterAction, DeadLetter]):
    """The audit trail of the entry."""

    model = DeadLetterAction
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor_name", "note", "details")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin[DeadLetter]):
    list_display = [
        "id",
        "created_at",
        "state",
        "reason",
        "job_link",
        "queue",
        "step_type",
        "error_type",
        "short_message",
        "attempts",
    ]
    list_filter = ["state", "reason", "job__queue", "step_type", "error_type", "created_at"]
    search_fields = ["error_message", "job__name", "job__id", "fingerprint"]
    date_hierarchy = "created_at"
    list_select_related = ["job"]
    actions = ["retry_selected", "dismiss_selected"]
    action_form = NoteActionForm
    inlines = [ActionInline]
    fieldsets = [
        (None, {"fields": ["job_link", "state", "reason", "attempts", "worker", "created_at"]}),
        (
            "Error",
            {
                "fields": [
                    "error_type",
                    "error_code",
                    "step_index",
                    "step_type",
                    "error_message",
                    "traceback",
                    "fingerprint",
                    "message_pattern",
                ]
            },
        ),
        ("The job when it died", {"fields": ["steps_snapshot", "input_snapshot", "policy"]}),
        ("Resolution", {"fields": ["resolved_at", "resolved_by", "note", "notified_at"]}),
    ]
    # Operators change entries through the actions (the services), never by editing the row.
    readonly_fields = [
        "job_link",
        "state",
        "reason",
        "attempts",
        "worker",
        "created_at",
        "error_type",
        "error_code",
        "step_index",
        "step_type",
        "error_message",
        "traceback",
        "fingerprint",
        "message_pattern",
        "steps_snapshot",
        "input_snapshot",
        "policy",
        "resolved_at",
        "resolved_by",
        "note",
        "notified_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "job__owner")

    @admin.display(description="job", ordering="job__name")
    def job_link(self, dead: DeadLetter) -> str:
        url = reverse("admin:jobs_job_change", args=[dead.job_id])
        return format_html('<a href="{}">{}</a>', url, dead.job.name)

    @admin.display(description="queue", ordering="job__queue")
    def queue(self, dead: DeadLetter) -> str:
        return dead.job.queue

    @admin.display(description="message")
    def short_message(self, dead: DeadLetter) -> str:
        message = dead.error_message
        return message if len(message) <= 100 else message[:99] + "…"

    @admin.display(description="traceback")
    def traceback(self, dead: DeadLetter) -> str:
        return _pre(dead.error.get("traceback") or "(none)")

    @admin.display(description="steps")
    def steps_snapshot(self, dead: DeadLetter) -> str:
        return _pre(dead.steps)

    @admin.display(description="input")
    def input_snapshot(self, dead: DeadLetter) -> str:
        return _pre(dead.input)

    @admin.display(description="retry policy")
    def policy(self, dead: DeadLetter) -> str:
        return _pre(dead.retry_policy)

    @admin.action(description="Retry the selected dead letters", permissions=["change"])
    def retry_selected(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[DeadLetter]
    ) -> None:
        outcome = services.dead_letter_retry_bulk(
            selection=queryset, actor=request.user, note=request.POST.get("note", "")
        )
        self.message_user(
            request,
            f"Retried {outcome.done} dead letter(s); skipped {outcome.skipped}.",
            messages.SUCCESS,
        )

    @admin.action(description="Dismiss the selected dead letters", permissions=["change"])
    def dismiss_selected(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[DeadLetter]
    ) -> None:
        outcome = services.dead_letter_dismiss_bulk(
            selection=queryset, actor=request.user, note=request.POST.get("note", "")
        )
        self.message_user(
            request,
            f"Dismissed {outcome.done} dead letter(s); skipped {outcome.skipped}.",
            messages.SUCCESS,
        )
