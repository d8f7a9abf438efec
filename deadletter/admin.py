"""Dead letters in the admin: read, grouped by fingerprint, retried (with changes) or dismissed.

Every change goes through the services, which write the audit trail; no entry is deleted here
(retention purges closed ones), since a FAILED job without its open entry could be neither
retried nor cancelled.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from deadletter import selectors, services
from deadletter.models import DeadLetter, DeadLetterAction
from jobplatform.access import owned_by_visible
from jobplatform.admin_tools import NoteActionForm, ServicesOnlyAdmin, pre
from jobplatform.auth import AuthenticatedHttpRequest
from jobplatform.errors import DomainError


class ActionInline(admin.TabularInline[DeadLetterAction, DeadLetter]):
    """The audit trail of the entry."""

    model = DeadLetterAction
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor_name", "note", "details")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RetryForm(forms.Form):
    """A retry with changes, as ``POST /dead-letters/{id}/retry/`` takes it; blank keeps."""

    note = forms.CharField(
        required=False, max_length=2000, widget=forms.TextInput(attrs={"size": 60})
    )
    max_retries = forms.IntegerField(required=False, help_text="blank: keep the job's own")
    from_step = forms.IntegerField(
        required=False, min_value=0, help_text="blank: resume at the step that failed"
    )
    input = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
        help_text="the job's input as JSON; left as shown, it is kept",
    )

    def overrides(self, *, current_input: Any) -> services.RetryOverrides:
        data = self.cleaned_data
        new_input = data.get("input")
        changed = "input" in self.changed_data and new_input is not None
        return services.RetryOverrides(
            max_retries=data.get("max_retries"),
            input=new_input if changed and new_input != current_input else None,
            from_step=data.get("from_step"),
        )


@admin.register(DeadLetter)
class DeadLetterAdmin(ServicesOnlyAdmin, admin.ModelAdmin[DeadLetter]):
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
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "job_link",
                    "state",
                    "reason",
                    "attempts",
                    "worker",
                    "created_at",
                    "retry_link",
                    "sequence",
                ]
            },
        ),
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
        "retry_link",
        "sequence",
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

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("groups/", view(self.groups_view), name="deadletter_deadletter_groups"),
            path("<int:dead_letter_id>/retry/", view(self.retry_view),
                 name="deadletter_deadletter_retry"),
            *super().get_urls(),
        ]  # fmt: skip

    @admin.display(description="retry")
    def retry_link(self, dead: DeadLetter) -> str:
        if dead.state not in services.RETRYABLE:
            return "-"  # the page refuses a role that may not retry (403)
        url = reverse("admin:deadletter_deadletter_retry", args=[dead.id])
        return format_html('<a class="button" href="{}">Retry, with changes…</a>', url)

    @admin.display(description="this job's dead letters")
    def sequence(self, dead: DeadLetter) -> str:
        """Every entry of the job, oldest first: a retried entry leads to the next failure."""
        entries = dead.job.dead_letters.order_by("id").values_list("id", "state", "created_at")
        parts = []
        for entry_id, state, created in entries:
            label = f"#{entry_id} {state} ({created:%Y-%m-%d %H:%M:%S} UTC)"
            if entry_id == dead.id:
                parts.append(format_html("<strong>{}</strong>", label))
            else:
                url = reverse("admin:deadletter_deadletter_change", args=[entry_id])
                rel = "next" if entry_id > dead.id else "prev"
                parts.append(format_html('<a href="{}" rel="{}">{}</a>', url, rel, label))
        return SafeString(" → ".join(parts))

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
    def traceback(self, dead: DeadLetter) -> SafeString:
        return pre(dead.error.get("traceback") or "(none)")

    @admin.display(description="steps")
    def steps_snapshot(self, dead: DeadLetter) -> SafeString:
        return pre(dead.steps)

    @admin.display(description="input")
    def input_snapshot(self, dead: DeadLetter) -> SafeString:
        return pre(dead.input)

    @admin.display(description="retry policy")
    def policy(self, dead: DeadLetter) -> SafeString:
        return pre(dead.retry_policy)

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

    def groups_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        """Open entries grouped by fingerprint; each group retried or dismissed as one."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        visible = self.get_queryset(request)
        can_act = self.has_change_permission(request)
        if request.method == "POST":
            if not can_act:  # a viewer sees the groups; retrying and dismissing is an operator's
                raise PermissionDenied
            fingerprint = request.POST.get("fingerprint", "")
            selection = visible.filter(fingerprint=fingerprint, state=DeadLetter.State.OPEN)
            note = request.POST.get("note", "")
            if request.POST.get("action") == "retry":
                outcome = services.dead_letter_retry_bulk(
                    selection=selection, actor=request.user, note=note
                )
                verb = "Retried"
            else:
                outcome = services.dead_letter_dismiss_bulk(
                    selection=selection, actor=request.user, note=note
                )
                verb = "Dismissed"
            self.message_user(
                request,
                f"{verb} {outcome.done} dead letter(s) of group {fingerprint}; "
                f"skipped {outcome.skipped}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(request.path)
        groups = selectors.dead_letter_groups(entries=visible.filter(state=DeadLetter.State.OPEN))
        context = {
            **self.admin_site.each_context(request),
            "title": "Open dead letters by fingerprint",
            "opts": self.model._meta,
            "groups": groups,
            "can_act": can_act,
        }
        return TemplateResponse(request, "deadletter/groups.html", context)

    def retry_view(self, request: AuthenticatedHttpRequest, dead_letter_id: int) -> HttpResponse:
        """Retry one entry with a new input, max_retries or from_step, through the service."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        dead = get_object_or_404(self.get_queryset(request), id=dead_letter_id)
        job = dead.job
        initial = {"input": job.input}
        form = RetryForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                services.dead_letter_retry(
                    dead_letter_id=dead.id,
                    actor=request.user,
                    note=form.cleaned_data["note"],
                    overrides=form.overrides(current_input=job.input),
                )
            except DomainError as error:
                form.add_error(None, f"{error.code}: {error.message}")
            else:
                self.message_user(
                    request, f"Retried dead letter {dead.id}: the job is pending.", messages.SUCCESS
                )
                return HttpResponseRedirect(
                    reverse("admin:deadletter_deadletter_change", args=[dead.id])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Retry dead letter {dead.id}",
            "opts": self.model._meta,
            "dead": dead,
            "job": job,
            "form": form,
            "max_from_step": job.next_step,
            "steps": [(i, step.get("type")) for i, step in enumerate(job.steps)],
        }
        return TemplateResponse(request, "deadletter/retry.html", context)
