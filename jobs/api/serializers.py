from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.urls import reverse
from rest_framework import serializers
from rest_framework.request import Request

from jobplatform.api.render import api_datetime
from jobs.cron import FireTime
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.selectors import JOB_SUMMARY_COLUMNS, schedule_next_fire_times
from jobs.services import JobSpec

_NUMBER = (int, float)
# name -> (accepted JSON types, how to say it). Shapes only: values (ranges, step schemas,
# queues) are checked by jobs.services.job_validate, which answers with JOBS.* codes.
_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "steps": ((list,), "a list of steps"),
    "input": ((object,), "any JSON value"),
    "queue": ((str,), "a string"),
    "priority": ((int,), "an integer"),
    "max_retries": ((int,), "an integer"),
    "retry_backoff": (_NUMBER, "a number of seconds"),
    "retry_backoff_max": (_NUMBER, "a number of seconds"),
    "retry_jitter": ((bool,), "true or false"),
    "timeout": ((int,), "an integer number of seconds"),
    "run_at": ((str, type(None)), "an ISO 8601 date-time with an offset, or null"),
    "idempotency_key": ((str,), "a string"),
}


def parse_submission(data: Any) -> tuple[JobSpec, str | None]:
    """A submission's JSON object as a JobSpec and its idempotency key; 400 on a wrong shape.

    Plain code rather than a DRF serializer: a bulk request parses a thousand of these, and the
    serializer's per-instance field copies dominated the request (docs/performance.md).
    """
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["a job must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    for field in data.keys() - _FIELDS.keys():
        errors[field] = ["unknown field"]
    for field, (types, described) in _FIELDS.items():
        if field in data and (
            not isinstance(data[field], types)
            or (isinstance(data[field], bool) and bool not in types)
        ):
            errors[field] = [f"must be {described}"]
    for field in ("name", "steps"):
        if field not in data:
            errors[field] = ["this field is required"]
    if isinstance(data.get("name"), str) and not 1 <= len(data["name"]) <= 200:
        errors["name"] = ["must have 1 to 200 characters"]
    if isinstance(data.get("queue"), str) and len(data["queue"]) > 64:
        errors["queue"] = ["must have at most 64 characters"]
    run_at = _datetime(data, "run_at", errors)
    if errors:
        raise serializers.ValidationError(dict(sorted(errors.items())))
    fields = {k: v for k, v in data.items() if k not in ("run_at", "idempotency_key")}
    return JobSpec(**fields, run_at=run_at), data.get("idempotency_key")


def _datetime(data: dict[str, Any], field: str, errors: dict[str, list[str]]) -> datetime | None:
    """``data[field]`` as a datetime (naive ones are refused by the services, with their code)."""
    if not isinstance(data.get(field), str):
        return None
    try:
        return datetime.fromisoformat(data[field].replace("Z", "+00:00"))
    except ValueError:
        errors[field] = ["must be an ISO 8601 date-time with an offset, or null"]
        return None


def parse_job_change(data: Any) -> datetime:
    """PATCH /jobs/{id}/: ``{"run_at": ...}``, the one thing a client may change (while PENDING)."""
    if not isinstance(data, dict) or data.keys() != {"run_at"}:
        raise serializers.ValidationError(
            {"non_field_errors": ['send {"run_at": "<ISO 8601 date-time with an offset>"}']}
        )
    errors: dict[str, list[str]] = {}
    run_at = _datetime(data, "run_at", errors)
    if run_at is None:
        raise serializers.ValidationError(
            errors or {"run_at": ["must be an ISO 8601 date-time with an offset"]}
        )
    return run_at


def parse_bulk_submission(data: Any) -> list[JobSpec]:
    """``{"jobs": [submission, ...]}``; an error names the index of the job it is about."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("jobs"), list)
        or data.keys() != {"jobs"}
    ):
        raise serializers.ValidationError({"jobs": ['send {"jobs": [submission, ...]}']})
    specs = []
    for index, job in enumerate(data["jobs"]):
        try:
            spec, key = parse_submission(job)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"jobs": {index: exc.detail}}) from None
        if key is not None:
            raise serializers.ValidationError(
                {"jobs": {index: {"idempotency_key": ["not supported in bulk submissions"]}}}
            )
        specs.append(spec)
    return specs


_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


@cache
def job_path(route: str) -> str:
    """The path of ``route`` ("job-detail", "job-cancel") for a placeholder job id, reversed once
    per process: ``reverse`` walks the URL resolver and cost as much as rendering the job."""
    return reverse(route, args=[_PLACEHOLDER])


def job_location(job_id: UUID) -> str:
    """The path of a job's detail (a submission's ``Location`` header)."""
    return job_path("job-detail").replace(_PLACEHOLDER, str(job_id))


class JobLinks:
    """Absolute links of jobs for one request: the host once, not per job."""

    def __init__(self, request: Request) -> None:
        url = request.build_absolute_uri
        self._self = url(job_path("job-detail"))
        self._cancel = url(job_path("job-cancel"))

    def __call__(self, job_id: UUID) -> dict[str, str]:
        return {
            "self": self._self.replace(_PLACEHOLDER, str(job_id)),
            "cancel": self._cancel.replace(_PLACEHOLDER, str(job_id)),
        }


def job_summary_output(job: Job, links: JobLinks) -> dict[str, Any]:
    """A job as lists show it."""
    row = {name: getattr(job, name) for name in JOB_SUMMARY_COLUMNS}
    return job_summary_row_output(row | {"owner_username": job.owner.get_username()}, links)


def job_summary_row_output(row: Mapping[str, Any], links: JobLinks) -> dict[str, Any]:
    """A job as lists show it, from a row of ``jobs.selectors.job_summary_rows``.

    Plain code rather than a ModelSerializer, which rebuilt its fields for every job and took most
    of a list request; from rows rather than model instances, which cost a Job and a User object
    per row (docs/performance.md).
    """
    schedule_id = row["schedule_id"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "status": row["status"],
        "owner": row["owner_username"],
        "queue": row["queue"],
        "priority": row["priority"],
        "attempts": row["attempts"],
        "run_at": api_datetime(row["run_at"]),
        "schedule": None if schedule_id is None else str(schedule_id),
        "scheduled_for": api_datetime(row["scheduled_for"]),
        "created_at": api_datetime(row["created_at"]),
        "started_at": api_datetime(row["started_at"]),
        "finished_at": api_datetime(row["finished_at"]),
        "links": links(row["id"]),
    }


def job_output(job: Job, links: JobLinks) -> dict[str, Any]:
    """A job in full, as its detail shows it (without its executions)."""
    return job_summary_output(job, links) | {
        "steps": job.steps,
        "input": job.input,
        "max_retries": job.max_retries,
        "retry_backoff": float(job.retry_backoff),
        "retry_backoff_max": float(job.retry_backoff_max),
        "retry_jitter": job.retry_jitter,
        "timeout": job.timeout,
        "next_step": job.next_step,
        "result": job.result,
        "last_error": job.last_error,
        "next_attempt_at": api_datetime(job.next_attempt_at),
        "trace_id": job.trace_id,
        "updated_at": api_datetime(job.updated_at),
        "queued_at": api_datetime(job.queued_at),
    }


# --- schedules ---------------------------------------------------------------------------------

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
            fields[name] = _datetime(data, name, errors)
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


class ScheduledJobOutput(serializers.ModelSerializer):
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

    def get_links(self, job: Job) -> dict[str, str]:
        request = self.context["request"]
        return {"self": request.build_absolute_uri(reverse("job-detail", args=[job.id]))}


class ScheduleFiringOutput(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFiring
        fields = ["scheduled_for", "fired_at", "outcome", "job", "manual", "missed", "cancelled"]


class ScheduleOutput(serializers.ModelSerializer):
    """A schedule with its next five fire times and recent jobs (``context["recent_jobs"]``)."""

    owner = serializers.CharField(source="owner.get_username")
    job = serializers.JSONField(source="job_template")
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

    def get_next_fire_times(self, schedule: Schedule) -> list[dict[str, Any]]:
        ticks = schedule_next_fire_times(schedule=schedule)
        return [fire_time_output(tick, schedule.timezone) for tick in ticks]

    def get_recent_jobs(self, schedule: Schedule) -> list[dict[str, Any]]:
        jobs = self.context["recent_jobs"].get(schedule.id, [])
        return ScheduledJobOutput(jobs, many=True, context=self.context).data

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
