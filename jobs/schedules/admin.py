"""Schedules in the admin: read-only rows, changed only through the services' actions."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from jobplatform.access import owned_by_visible
from jobplatform.errors import Conflict
from jobs.redaction import redact_template
from jobs.schedules import firing, services
from jobs.schedules.cron import FireTime
from jobs.schedules.models import Schedule, ScheduleFiring
from jobs.schedules.selectors import schedule_next_fire_times


class ScheduleFiringInline(admin.TabularInline[ScheduleFiring, Schedule]):
    """The schedule's latest firings: the job each tick made, or why it made none."""

    model = ScheduleFiring
    extra = 0
    can_delete = False
    fields = ("scheduled_for", "fired_at", "outcome", "job", "manual", "missed", "cancelled")
    readonly_fields = fields
    ordering = ["-id"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _describe(tick: FireTime, timezone: str) -> str:
    local = tick.at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")
    if tick.transition == "gap":
        return f"{local} (moved: {tick.nominal:%H:%M} did not exist)"
    if tick.transition == "fold":
        return f"{local} (first of two {tick.nominal:%H:%M})"
    if tick.transition == "fold_second":
        return f"{local} (second {tick.nominal:%H:%M})"
    return local


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    """Read-only: schedules change through the API and these actions, which call the services
    (a plain row edit would leave next_fire_at behind)."""

    list_display = [
        "name", "owner", "cron", "timezone", "enabled", "overlap", "last_fired_at", "next_runs",
    ]  # fmt: skip
    list_filter = ["enabled", "overlap", "misfire", "timezone"]
    search_fields = ["name", "id", "cron"]
    list_select_related = ["owner"]
    actions = ["pause_schedules", "resume_schedules", "trigger_schedules"]
    inlines = [ScheduleFiringInline]
    # The job template is shown with its secret step params redacted (jobs.redaction).
    readonly_fields = [
        "next_runs",
        *(f.name if f.name != "job_template" else "template" for f in Schedule._meta.fields),
    ]
    exclude = ["job_template"]

    @admin.display(description="job template")
    def template(self, schedule: Schedule) -> str:
        return json.dumps(redact_template(schedule.job_template), indent=2)

    @admin.display(description="next runs")
    def next_runs(self, schedule: Schedule) -> str:
        if not schedule.enabled:  # it fires nothing until resumed: no run time to show
            return format_html('<span class="paused">paused</span> {}', schedule.pause_note)
        ticks = schedule_next_fire_times(schedule=schedule, count=5)
        if not ticks:
            return "none"
        return format_html_join(
            "", "<div>{}</div>", ((_describe(t, schedule.timezone),) for t in ticks)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        # The admin shows what the API would: the user's own, their teams', or (admin role) all.
        return owned_by_visible(super().get_queryset(request), request.user, "owner")

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule_id=obj.id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule_id in queryset.values_list("id", flat=True):
            services.schedule_delete(schedule_id=schedule_id)

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        note = f"paused in the admin by {request.user}"
        for schedule_id in queryset.filter(enabled=True).values_list("id", flat=True):
            services.schedule_pause(schedule_id=schedule_id, note=note)
        self.message_user(request, "Paused the selected schedules.", messages.SUCCESS)

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule_id in queryset.filter(enabled=False).values_list("id", flat=True):
            services.schedule_resume(schedule_id=schedule_id)
        self.message_user(request, "Resumed the selected schedules.", messages.SUCCESS)

    @admin.action(description="Trigger the selected schedules now", permissions=["change"])
    def trigger_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        made, skipped = 0, 0
        for schedule_id in queryset.values_list("id", flat=True):
            try:
                made += len(firing.schedule_trigger(schedule_id=schedule_id).job_ids)
            except Conflict:  # the overlap policy skipped the tick (recorded as a firing)
                skipped += 1
        self.message_user(request, f"Triggered: {made} job(s) created.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} schedule(s) skipped the tick: an earlier job is unfinished.",
                messages.INFO,
            )
