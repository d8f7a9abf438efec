from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deadletter.api import schemas
from deadletter.api.filters import DeadLetterFilter
from deadletter.models import DeadLetter, DeadLetterAction
from deadletter.selectors import Group
from deadletter.services import RetryOverrides
from jobplatform.api.serializers import StrictInput
from jobs.api.schemas import AttemptErrorSchema, ExecutionSchema, StepSpecSchema

MAX_NOTE = 2000
MAX_BULK_IDS = 10_000


class DismissInput(StrictInput):
    note = serializers.CharField(max_length=MAX_NOTE, required=False, allow_blank=True, default="")


class RetryInput(DismissInput):
    """Shapes only; the values are checked by the services (DEADLETTER.* and JOBS.* codes)."""

    max_retries = serializers.IntegerField(required=False)
    input = serializers.JSONField(required=False)
    from_step = serializers.IntegerField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "input" in attrs and attrs["input"] is None:
            raise serializers.ValidationError({"input": "leave it out to keep the job's input"})
        return attrs

    def overrides(self) -> RetryOverrides:
        data = self.validated_data
        return RetryOverrides(
            max_retries=data.get("max_retries"),
            input=data.get("input"),
            from_step=data.get("from_step"),
        )


class BulkInput(DismissInput):
    """Exactly one selection: ``ids``, ``group`` (a fingerprint) or ``filter`` (list parameters).

    ``group`` and ``filter`` select open entries unless the filter names a ``state``.
    """

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), max_length=MAX_BULK_IDS, required=False
    )
    group = serializers.CharField(max_length=32, required=False)
    filter = serializers.DictField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        given = [key for key in ("ids", "group", "filter") if key in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"selection": "give exactly one of ids, group or filter"}
            )
        if "filter" in attrs:
            if not attrs["filter"]:
                # Everything open, by accident, is too easy to send: say so explicitly.
                raise serializers.ValidationError(
                    {"filter": 'name at least one filter, e.g. {"state": "open"}'}
                )
            unknown = sorted(set(attrs["filter"]) - set(DeadLetterFilter.base_filters))
            if unknown:
                raise serializers.ValidationError(
                    {"filter": {name: "unknown filter" for name in unknown}}
                )
        return attrs


class ActionOutput(serializers.ModelSerializer[DeadLetterAction]):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = DeadLetterAction
        fields = ["kind", "actor", "note", "details", "created_at"]


class DeadLetterSummaryOutput(serializers.ModelSerializer[DeadLetter]):
    job = serializers.SerializerMethodField()
    resolved_by = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "state",
            "reason",
            "job",
            "error_type",
            "error_code",
            "error_message",
            "step_type",
            "step_index",
            "fingerprint",
            "attempts",
            "worker",
            "created_at",
            "resolved_at",
            "resolved_by",
            "note",
            "links",
        ]

    @extend_schema_field(schemas.DeadLetterJobSchema)
    def get_job(self, dead: DeadLetter) -> dict[str, Any]:
        job = dead.job
        return {
            "id": str(job.id),
            "name": job.name,
            "status": job.status,
            "queue": job.queue,
            "owner": job.owner.get_username(),
        }

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_resolved_by(self, dead: DeadLetter) -> str | None:
        return dead.resolved_by.get_username() if dead.resolved_by else None

    @extend_schema_field(schemas.DeadLetterLinksSchema)
    def get_links(self, dead: DeadLetter) -> dict[str, str]:
        request = self.context["request"]
        url = request.build_absolute_uri
        return {
            "self": url(reverse("dead-letter-detail", args=[dead.id])),
            "retry": url(reverse("dead-letter-retry", args=[dead.id])),
            "dismiss": url(reverse("dead-letter-dismiss", args=[dead.id])),
            "job": url(reverse("job-detail", args=[dead.job_id])),
        }


@extend_schema_field(AttemptErrorSchema)
class ErrorJson(serializers.JSONField):
    """A JSON column rendered as stored, described in the OpenAPI document by its shape."""


@extend_schema_field(StepSpecSchema(many=True))
class StepsJson(serializers.JSONField):
    """As ErrorJson: the job's steps."""


@extend_schema_field(schemas.RetryPolicySchema)
class RetryPolicyJson(serializers.JSONField):
    """As ErrorJson: the job's retry policy."""


class DeadLetterOutput(DeadLetterSummaryOutput):
    """The entry with its full error (traceback included) and the job as it was when it died."""

    # The JSON columns as the OpenAPI document shows them; rendered as stored.
    error = ErrorJson(read_only=True)
    steps = StepsJson(read_only=True)
    retry_policy = RetryPolicyJson(read_only=True)

    class Meta(DeadLetterSummaryOutput.Meta):
        fields = [
            *DeadLetterSummaryOutput.Meta.fields,
            "error",
            "message_pattern",
            "steps",
            "input",
            "retry_policy",
            "notified_at",
        ]


class GroupOutput(serializers.Serializer[Group | list[Group]]):  # a list: many=True
    fingerprint = serializers.CharField()
    step_type = serializers.CharField()
    error_type = serializers.CharField()
    message_pattern = serializers.CharField()
    count = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    example = serializers.SerializerMethodField()

    @extend_schema_field(schemas.GroupExampleSchema)
    def get_example(self, group: Group) -> dict[str, Any]:
        dead = group.example
        request = self.context["request"]
        return {
            "id": dead.id,
            "job": str(dead.job_id),
            "error_message": dead.error_message,
            "created_at": serializers.DateTimeField().to_representation(dead.created_at),
            "url": request.build_absolute_uri(reverse("dead-letter-detail", args=[dead.id])),
        }


class DeadLetterDetailOutput(DeadLetterOutput):
    """The detail: the entry, its audit trail and its job's every attempt (for the OpenAPI
    document; the view adds both to DeadLetterOutput's data)."""

    actions = ActionOutput(many=True)
    executions = ExecutionSchema(many=True)

    class Meta(DeadLetterOutput.Meta):
        fields = [*DeadLetterOutput.Meta.fields, "actions", "executions"]


class GroupListOutput(serializers.Serializer[Any]):
    results = GroupOutput(many=True)
