"""The shapes of the schedules API, for the OpenAPI document only (see ``jobs/api/schemas.py``).

Requests are parsed by ``parse_schedule`` (plain code); responses are rendered by the model
serializers of ``serializers.py``, whose computed fields are described here.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.api.schemas import JobSubmissionSchema, JobSummarySchema, StepSpecSchema
from jobs.schedules.models import Schedule, ScheduleFiring

Schema = serializers.Serializer[Any]


class JobTemplateInputSchema(JobSubmissionSchema):
    """The job each firing makes: a submission without run_at or idempotency_key; its name
    defaults to the schedule's."""

    closed = True

    name = serializers.CharField(required=False, min_length=1, max_length=200)
    run_at = None  # type: ignore[assignment]
    idempotency_key = None  # type: ignore[assignment]


class ScheduleInputSchema(Schema):
    """A schedule (POST; PATCH takes any of the fields). Unknown fields are refused."""

    closed = True

    name = serializers.CharField(min_length=1, max_length=200)
    cron = serializers.CharField(help_text="five fields, e.g. '*/5 * * * *', in the timezone")
    timezone = serializers.CharField(required=False, default="UTC", help_text="an IANA name")
    job = JobTemplateInputSchema()
    overlap = serializers.ChoiceField(choices=Schedule.Overlap.choices, required=False)
    misfire = serializers.ChoiceField(choices=Schedule.Misfire.choices, required=False)
    misfire_window = serializers.IntegerField(required=False, min_value=0)
    misfire_cap = serializers.IntegerField(required=False, min_value=1)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    end_at = serializers.DateTimeField(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False, default=True)
    jitter = serializers.IntegerField(required=False, min_value=0)
    pause_note = serializers.CharField(required=False, allow_blank=True)


class PauseSchema(Schema):
    closed = True

    note = serializers.CharField(required=False, allow_blank=True, help_text="why")


class JobTemplateSchema(Schema):
    """The job template as stored (secret step params redacted)."""

    name = serializers.CharField()
    steps = StepSpecSchema(many=True)
    input = serializers.JSONField()
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    max_retries = serializers.IntegerField()
    retry_backoff = serializers.FloatField()
    retry_backoff_max = serializers.FloatField()
    retry_jitter = serializers.BooleanField()
    timeout = serializers.IntegerField()
    concurrency_key = serializers.CharField(
        required=False, allow_null=True, help_text="absent from templates stored before it"
    )
    max_concurrency = serializers.IntegerField(required=False)
    rate_limit = serializers.CharField(required=False, allow_null=True)
    callback_url = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="empty: none; absent from templates stored before it",
    )


class FireTimeSchema(Schema):
    at = serializers.DateTimeField(help_text="in the schedule's timezone")
    utc = serializers.DateTimeField()
    local_time = serializers.CharField(help_text="the wall-clock time the expression names")
    moved = serializers.BooleanField(help_text="a daylight-saving transition moved it")
    transition = serializers.ChoiceField(
        choices=["gap", "fold", "fold_second"],
        allow_null=True,
        help_text="gap: the time did not exist that day; fold: it occurred twice",
    )


class ScheduledJobLinksSchema(Schema):
    self = serializers.URLField()


class ScheduleLinksSchema(Schema):
    self = serializers.URLField()
    pause = serializers.URLField()
    resume = serializers.URLField()
    trigger = serializers.URLField()
    jobs = serializers.URLField(help_text="the list of the jobs it made")


class TriggerSchema(Schema):
    outcome = serializers.ChoiceField(choices=ScheduleFiring.Outcome.choices)
    scheduled_for = serializers.DateTimeField()
    job = JobSummarySchema(allow_null=True, help_text="null when the tick was buffered")
