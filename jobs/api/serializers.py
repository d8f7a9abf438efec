from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from jobs.models import Job
from jobs.services import JobSpec


class OffsetDateTimeField(serializers.DateTimeField):
    """Parses ISO 8601 but keeps a naive value naive, so the service can refuse it by name."""

    def enforce_timezone(self, value: datetime) -> datetime:
        return value if timezone.is_naive(value) else super().enforce_timezone(value)


class JobSubmitInput(serializers.Serializer):
    """Shapes only; the values are checked by jobs.services.job_validate with JOBS.* codes."""

    name = serializers.CharField(max_length=200)
    steps = serializers.ListField(child=serializers.JSONField())
    input = serializers.JSONField(required=False)
    queue = serializers.CharField(max_length=64, required=False)
    priority = serializers.IntegerField(required=False)
    max_retries = serializers.IntegerField(required=False)
    retry_backoff = serializers.FloatField(required=False)
    retry_backoff_max = serializers.FloatField(required=False)
    retry_jitter = serializers.BooleanField(required=False)
    timeout = serializers.IntegerField(required=False)
    run_at = OffsetDateTimeField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=255, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(self.initial_data, dict):
            raise serializers.ValidationError("the body must be a JSON object")
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({field: "unknown field" for field in unknown})
        return attrs

    def to_spec(self) -> JobSpec:
        fields = {k: v for k, v in self.validated_data.items() if k != "idempotency_key"}
        return JobSpec(**fields)


class JobBulkSubmitInput(serializers.Serializer):
    jobs = serializers.ListField(child=serializers.DictField(), allow_empty=True)

    def to_specs(self) -> list[JobSpec]:
        specs = []
        for index, data in enumerate(self.validated_data["jobs"]):
            one = JobSubmitInput(data=data)
            if not one.is_valid():
                raise serializers.ValidationError({"jobs": {index: one.errors}})
            if "idempotency_key" in one.validated_data:
                raise serializers.ValidationError(
                    {"jobs": {index: {"idempotency_key": "not supported in bulk submissions"}}}
                )
            specs.append(one.to_spec())
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
