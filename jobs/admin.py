from __future__ import annotations

from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from executions.models import Execution
from jobs import services
from jobs.cron import FireTime
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.selectors import schedule_next_fire_times


class ExecutionInline(admin.TabularInline):
    """Every attempt of the job; each links to its page with the step results."""

    model = Execution
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["attempt", "status", "worker", "started_at", "finished_at", "will_retry", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "owner", "queue", "priority", "attempts", "created_at"]
    list_filter = ["status", "queue"]
    search_fields = ["name", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["cancel_jobs"]
    inlines = [ExecutionInline]
    # Operators change jobs through the services (actions), never by editing the row.
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled = sum(
            services.job_cancel(job_id=job_id) for job_id in queryset.values_list("id", flat=True)
        )
        self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS)


class ScheduleFiringInline(admin.TabularInline):
    """The schedule's latest firings: the job each tick made, or why it made none."""

    model = ScheduleFiring
    extra = 0
    can_delete = False
    fields = ["scheduled_for", "fired_at", "outcome", "job", "manual", "missed", "cancelled"]
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
class ScheduleAdmin(admin.ModelAdmin):
    """Read-only: schedules change through the API and these actions, which call the services
    (a plain row edit would leave next_fire_at and beat's row behind)."""

    list_display = ["name", "owner", "cron", "timezone", "enabled", "overlap", "next_runs"]
    list_filter = ["enabled", "overlap", "misfire", "timezone"]
    search_fields = ["name", "id", "cron"]
    list_select_related = ["owner"]
    actions = ["pause_schedules", "resume_schedules", "trigger_schedules"]
    inlines = [ScheduleFiringInline]
    readonly_fields = ["next_runs", *(f.name for f in Schedule._meta.fields)]

    @admin.display(description="next runs")
    def next_runs(self, schedule: Schedule) -> str:
        ticks = schedule_next_fire_times(schedule=schedule, count=5)
        if not ticks:
            return "none"
        return format_html_join(
            "", "<div>{}</div>", ((_describe(t, schedule.timezone),) for t in ticks)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule_id=obj.id)  # with its beat rows

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule_id in queryset.values_list("id", flat=True):
            services.schedule_delete(schedule_id=schedule_id)

    @admin.action(description="Pause the selected schedules")
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        note = f"paused in the admin by {request.user}"
        for schedule_id in queryset.filter(enabled=True).values_list("id", flat=True):
            services.schedule_pause(schedule_id=schedule_id, note=note)
        self.message_user(request, "Paused the selected schedules.", messages.SUCCESS)

    @admin.action(description="Resume the selected schedules")
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule_id in queryset.filter(enabled=False).values_list("id", flat=True):
            services.schedule_resume(schedule_id=schedule_id)
        self.message_user(request, "Resumed the selected schedules.", messages.SUCCESS)

    @admin.action(description="Trigger the selected schedules now")
    def trigger_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        made = sum(
            len(services.schedule_trigger(schedule_id=schedule_id).job_ids)
            for schedule_id in queryset.values_list("id", flat=True)
        )
        self.message_user(request, f"Triggered: {made} job(s) created.", messages.SUCCESS)
