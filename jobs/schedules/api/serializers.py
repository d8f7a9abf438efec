"""Schedules over HTTP: request parsing (shapes only; values are checked by the services) and
response rendering."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobplatform.api.render import api_datetime
from jobs.api.serializers import datetime_field, parse_submission
from jobs.models import Job
from jobs.redaction import redact_template
from jobs.schedules.api import schemas
from jobs.schedules.cron import FireTime
from jobs.schedules.models import Schedule, ScheduleFiring
from jobs.schedules.selectors import schedule_next_fire_times

_SCHEDULE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "cron": ((str,), "a cron expression, e.g. '*/5 * * * *'"),
    "timezone": ((str,), "an IANA timezone name, e.g. 'Europe/Berlin'"),
    "job": ((dict,), "a job submission without run_at"),
    "overlap": ((str,), "one of " + ", ".join(Schedule.Overlap.values)),
    "misfire": ((str,), "one of " + ", ".join(Schedule.Misfire.values)),
    "misfire_window": ((int,), "an integer number of seconds"),
    "misfire_cap": ((int,), "an integer"),
    "start_at": ((str, type(None)), "an ISO 8601 date-time with an offset, or null"),
    "end_at": ((str, type(None)), "an ISO 8601 date-time with an offset, or null"),
    "enabled": ((bool,), "true or false"),
    "jitter": ((int,), "an integer number of seconds"),
    "pause_note": ((str,), "a string"),
}


def parse_schedule(data: Any, *, partial: bool, job_name: str = "") -> dict[str, Any]:
    """A schedule's JSON object as ScheduleSpec fields; 400 on a wrong shape. ``partial``: a
    PATCH, where every field is optional. A job template without a name takes the schedule's
    (or ``job_name``)."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["send a JSON object"]})
    errors: dict[str, Any] = {}
    for name in data.keys() - _SCHEDULE_FIELDS.keys():
        errors[name] = ["unknown field"]
    for name, (types, described) in _SCHEDULE_FIELDS.items():
        value = data.get(name)
        if name in data and (
            not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        ):
            errors[name] = [f"must be {described}"]
    for name in () if partial else ("name", "cron", "job"):
        if name not in data:
            errors[name] = ["this field is required"]
    fields = {k: v for k, v in data.items() if k in _SCHEDULE_FIELDS and k not in errors}
    for name in ("start_at", "end_at"):
        if name in fields:
            fields[name] = datetime_field(data, name, errors)
    if isinstance(fields.get("job"), dict):
        template = fields["job"]
        for name in ("run_at", "idempotency_key"):
            if name in template:
                errors.setdefault("job", {})[name] = ["not part of a job template"]
        try:
            spec, _ = parse_submission({"name": data.get("name") or job_name} | template)
            fields["job"] = spec
        except serializers.ValidationError as exc:
            errors["job"] = exc.detail
    if errors:
        raise serializers.ValidationError(dict(sorted(errors.items())))
    return fields


def parse_pause(data: Any) -> str:
    """POST .../pause/: an optional ``{"note": "why"}``."""
    if data in (None, {}):
        return ""
    if not isinstance(data, dict) or data.keys() - {"note"} or not isinstance(data["note"], str):
        raise serializers.ValidationError({"note": ['send {"note": "why"}, or nothing']})
    return data["note"]


def fire_time_output(tick: FireTime, timezone: str) -> dict[str, Any]:
    """A fire time in the schedule's timezone, and whether a DST transition moved it."""
    return {
        "at": tick.at.astimezone(ZoneInfo(timezone)).isoformat(),
        "utc": api_datetime(tick.at),
        "local_time": tick.nominal.isoformat(),  # the wall-clock time the expression names
        "moved": tick.moved,
        "transition": tick.transition,
    }


class ScheduledJobOutput(serializers.ModelSerializer[Job]):
    """A job as a schedule's recent job: its tick and how it went."""

    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "scheduled_for",
            "run_at",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]

    @extend_schema_field(schemas.ScheduledJobLinksSchema)
    def get_links(self, job: Job) -> dict[str, str]:
        request = self.context["request"]
        return {"self": request.build_absolute_uri(reverse("job-detail", args=[job.id]))}


class ScheduleFiringOutput(serializers.ModelSerializer[ScheduleFiring]):
    class Meta:
        model = ScheduleFiring
        fields = ["scheduled_for", "fired_at", "outcome", "job", "manual", "missed", "cancelled"]


class ScheduleOutput(serializers.ModelSerializer[Schedule]):
    """A schedule with its next five fire times and recent jobs (``context["recent_jobs"]``)."""

    owner = serializers.CharField(source="owner.get_username")
    job = serializers.SerializerMethodField()
    next_fire_times = serializers.SerializerMethodField()
    recent_jobs = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "owner",
            "cron",
            "timezone",
            "job",
            "overlap",
            "misfire",
            "misfire_window",
            "misfire_cap",
            "start_at",
            "end_at",
            "enabled",
            "jitter",
            "pause_note",
            "paused_at",
            "next_fire_at",
            "next_fire_times",
            "buffered_for",
            "last_fired_at",
            "recent_jobs",
            "created_at",
            "updated_at",
            "links",
        ]

    @extend_schema_field(schemas.JobTemplateSchema)
    def get_job(self, schedule: Schedule) -> Any:
        return redact_template(schedule.job_template)

    @extend_schema_field(schemas.FireTimeSchema(many=True))
    def get_next_fire_times(self, schedule: Schedule) -> list[dict[str, Any]]:
        ticks = schedule_next_fire_times(schedule=schedule)
        return [fire_time_output(tick, schedule.timezone) for tick in ticks]

    @extend_schema_field(ScheduledJobOutput(many=True))
    def get_recent_jobs(self, schedule: Schedule) -> list[dict[str, Any]]:
        jobs = self.context["recent_jobs"].get(schedule.id, [])
        # many=True makes a ListSerializer whose .data is a list; the stubs type it as a dict.
        return ScheduledJobOutput(jobs, many=True, context=self.context).data  # type: ignore[return-value]

    @extend_schema_field(schemas.ScheduleLinksSchema)
    def get_links(self, schedule: Schedule) -> dict[str, str]:
        request = self.context["request"]
        url = request.build_absolute_uri
        return {
            "self": url(reverse("schedule-detail", args=[schedule.id])),
            "pause": url(reverse("schedule-pause", args=[schedule.id])),
            "resume": url(reverse("schedule-resume", args=[schedule.id])),
            "trigger": url(reverse("schedule-trigger", args=[schedule.id])),
            "jobs": url(reverse("job-list")) + f"?schedule={schedule.id}",
        }


class ScheduleDetailOutput(ScheduleOutput):
    """A schedule's detail: with its recent firings (for the OpenAPI document; the view adds
    them to ScheduleOutput's data)."""

    recent_firings = ScheduleFiringOutput(many=True)

    class Meta(ScheduleOutput.Meta):
        fields = [*ScheduleOutput.Meta.fields, "recent_firings"]
