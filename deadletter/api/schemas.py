"""The shapes of the dead-letter API that its serializers do not show, for the OpenAPI document
(see ``jobs/api/schemas.py``)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.models import JobStatus

Schema = serializers.Serializer[Any]


class DeadLetterJobSchema(Schema):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    queue = serializers.CharField()
    owner = serializers.CharField()


class DeadLetterLinksSchema(Schema):
    self = serializers.URLField()
    retry = serializers.URLField()
    dismiss = serializers.URLField()
    job = serializers.URLField()


class RetryPolicySchema(Schema):
    max_retries = serializers.IntegerField()
    retry_backoff = serializers.FloatField()
    retry_backoff_max = serializers.FloatField()
    retry_jitter = serializers.BooleanField()
    timeout = serializers.IntegerField()


class GroupExampleSchema(Schema):
    id = serializers.IntegerField()
    job = serializers.UUIDField()
    error_message = serializers.CharField()
    created_at = serializers.DateTimeField()
    url = serializers.URLField()


class BulkRetriedSchema(Schema):
    selected = serializers.IntegerField(help_text="entries the selection matched")
    retried = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="not in a state to retry")


class BulkDismissedSchema(Schema):
    selected = serializers.IntegerField(help_text="entries the selection matched")
    dismissed = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="not open")


class ReasonQueueCountSchema(Schema):
    reason = serializers.CharField()
    queue = serializers.CharField()
    count = serializers.IntegerField()


class DeadLetterStatsSchema(Schema):
    open = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField())
    by_queue = serializers.DictField(child=serializers.IntegerField())
    by_reason_and_queue = ReasonQueueCountSchema(many=True)
