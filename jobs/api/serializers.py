from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from django.urls import reverse
from rest_framework import serializers
from rest_framework.request import Request

from jobplatform.api.render import api_datetime
from jobs.models import CallbackDelivery, Job
from jobs.redaction import redact_steps
from jobs.selectors import JOB_SUMMARY_COLUMNS, QueueView
from jobs.services import JobSpec
from jobs.steps.http import redact_url

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
    "concurrency_key": ((str, type(None)), "a string, or null"),
    "max_concurrency": ((int,), "an integer"),
    "rate_limit": ((str, type(None)), "a string, or null"),
    "callback_url": ((str, type(None)), "an http(s) URL, or null"),
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
    if data.get("callback_url") == "":  # as the schema says (minLength 1): null for none
        errors["callback_url"] = ["must be an http(s) URL, or null"]
    run_at = datetime_field(data, "run_at", errors)
    if errors:
        raise serializers.ValidationError(dict(sorted(errors.items())))
    fields = {k: v for k, v in data.items() if k not in ("run_at", "idempotency_key")}
    if fields.get("callback_url", "") is None:  # null: no callback, as absent
        del fields["callback_url"]
    return JobSpec(**fields, run_at=run_at), data.get("idempotency_key")


def datetime_field(
    data: dict[str, Any], field: str, errors: dict[str, list[str]]
) -> datetime | None:
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
    run_at = datetime_field(data, "run_at", errors)
    if run_at is None:
        raise serializers.ValidationError(
            errors or {"run_at": ["must be an ISO 8601 date-time with an offset"]}
        )
    return run_at


def parse_bulk_submission(data: Any) -> tuple[list[JobSpec], str | None]:
    """``{"jobs": [submission, ...], "idempotency_key"?}``: the specs and the batch's key; an
    error names the index of the job it is about. The jobs themselves carry no key."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("jobs"), list)
        or not {"jobs"} <= data.keys() <= {"jobs", "idempotency_key"}
    ):
        raise serializers.ValidationError(
            {"jobs": ['send {"jobs": [submission, ...], "idempotency_key"?: "..."}']}
        )
    key = data.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise serializers.ValidationError({"idempotency_key": ["a string of 1 to 255 characters"]})
    specs = []
    for index, job in enumerate(data["jobs"]):
        try:
            spec, job_key = parse_submission(job)
        except serializers.ValidationError as exc:
            # str(index): the key JSON gives it anyway; the error's detail is keyed by str.
            raise serializers.ValidationError({"jobs": {str(index): exc.detail}}) from None
        if job_key is not None:
            raise serializers.ValidationError(
                {
                    "jobs": {
                        str(index): {
                            "idempotency_key": ['one key for the whole batch, beside "jobs"']
                        }
                    }
                }
            )
        specs.append(spec)
    return specs, key


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
        "steps": redact_steps(job.steps),
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
        "concurrency_key": job.concurrency_key,
        "max_concurrency": job.max_concurrency,
        "rate_limit": job.rate_limit,
        "hosts": job.hosts,
        # As deliveries show it: no userinfo, no values of secret-looking query names.
        "callback_url": redact_url(job.callback_url) if job.callback_url else None,
    }


def callback_output(deliveries: list[CallbackDelivery]) -> list[dict[str, Any]]:
    """A job's callback attempts, as GET /jobs/{id}/callbacks/ shows them."""
    return [
        {
            "delivery_id": str(d.delivery_id),
            "target": d.target,
            "url": redact_url(d.url),
            "event": d.event,
            "attempt": d.attempt,
            "state": d.state,
            "status_code": d.status_code,
            "error": d.error,
            "started_at": api_datetime(d.started_at),
            "finished_at": api_datetime(d.finished_at),
        }
        for d in deliveries
    ]


def waiting_for_output(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``jobs.selectors.job_waiting_for`` with its datetimes rendered."""
    return [
        {k: api_datetime(v) if isinstance(v, datetime) else v for k, v in reason.items()}
        for reason in reasons
    ]


def queue_output(queue: QueueView, request: Request) -> dict[str, Any]:
    return {
        "name": queue.name,
        "paused": queue.paused,
        "paused_at": api_datetime(queue.paused_at),
        "max_in_flight": queue.max_in_flight,
        "max_in_flight_is_default": queue.max_in_flight_is_default,
        "max_queued": queue.max_queued or None,
        "queued": queue.queued,
        "running": queue.running,
        "links": {
            "self": request.build_absolute_uri(reverse("queue-detail", args=[queue.name])),
            "pause": request.build_absolute_uri(reverse("queue-pause", args=[queue.name])),
            "resume": request.build_absolute_uri(reverse("queue-resume", args=[queue.name])),
        },
    }


def parse_queue_change(data: Any) -> int | None:
    """PATCH /queues/{name}/: ``{"max_in_flight": <integer, or null for the default>}``."""
    if (
        not isinstance(data, dict)
        or data.keys() != {"max_in_flight"}
        or not (data["max_in_flight"] is None or type(data["max_in_flight"]) is int)
    ):
        raise serializers.ValidationError(
            {"max_in_flight": ['send {"max_in_flight": <an integer, or null for the default>}']}
        )
    return data["max_in_flight"]
