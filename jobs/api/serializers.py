from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from jobs.models import Job
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
    run_at = None
    if isinstance(data.get("run_at"), str):
        try:
            run_at = datetime.fromisoformat(data["run_at"].replace("Z", "+00:00"))
        except ValueError:
            errors["run_at"] = [f"must be {_FIELDS['run_at'][1]}"]
    if errors:
        raise serializers.ValidationError(dict(sorted(errors.items())))
    fields = {k: v for k, v in data.items() if k not in ("run_at", "idempotency_key")}
    return JobSpec(**fields, run_at=run_at), data.get("idempotency_key")


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


class JobSummaryOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username")
    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "name",
            "status",
            "owner",
            "queue",
            "priority",
            "attempts",
            "run_at",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]

    def get_links(self, job: Job) -> dict[str, str]:
        request = self.context["request"]
        return {
            "self": request.build_absolute_uri(reverse("job-detail", args=[job.id])),
            "cancel": request.build_absolute_uri(reverse("job-cancel", args=[job.id])),
        }


class JobOutput(JobSummaryOutput):
    class Meta(JobSummaryOutput.Meta):
        fields = [
            *JobSummaryOutput.Meta.fields,
            "steps",
            "input",
            "max_retries",
            "retry_backoff",
            "retry_backoff_max",
            "retry_jitter",
            "timeout",
            "next_step",
            "result",
            "last_error",
            "next_attempt_at",
            "trace_id",
            "updated_at",
            "queued_at",
        ]
