"""The shapes of the platform's own endpoints (health, API keys, JWTs), for the OpenAPI document.

Schema-only serializers, as in ``jobs/api/schemas.py``: the views render plain dictionaries.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobplatform.models import ApiKey, ProcessRole

Schema = serializers.Serializer[Any]
# Readiness and process health answer one of these (ENUM_NAME_OVERRIDES names it HealthStatusEnum).
HEALTH_STATUSES = ("ok", "degraded")


class HealthChecksSchema(Schema):
    database = serializers.CharField(help_text='"ok", or "error: <exception class>"')
    broker = serializers.CharField(help_text='"ok", or "error: <exception class>"')
    migrations = serializers.CharField(help_text='"ok", or what is not applied')


class ProcessSchema(Schema):
    role = serializers.ChoiceField(choices=ProcessRole.choices)
    name = serializers.CharField()
    hostname = serializers.CharField()
    pid = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_beat_at = serializers.DateTimeField()
    seconds_since_beat = serializers.FloatField()
    alive = serializers.BooleanField(help_text="beat within three heartbeat intervals")
    details = serializers.DictField(child=serializers.JSONField())


class ProcessHealthSchema(Schema):
    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    alive = serializers.DictField(
        child=serializers.IntegerField(), help_text="live processes by role"
    )
    processes = ProcessSchema(many=True)


class HealthSchema(Schema):
    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    checks = HealthChecksSchema()


class ApiKeySchema(Schema):
    prefix = serializers.CharField(help_text="the key's public part: names it in the URLs")
    name = serializers.CharField()
    user = serializers.CharField(help_text="the owner's username")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.Scope.choices))
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked = serializers.BooleanField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class NewApiKeySchema(ApiKeySchema):
    key = serializers.CharField(help_text="the whole key, shown this once: keep it")


class TokenObtainSchema(Schema):
    closed = False  # simplejwt ignores other fields

    username = serializers.CharField(write_only=True)
    password = serializers.CharField(write_only=True)


class TokenPairSchema(Schema):
    access = serializers.CharField(help_text="a JWT: Authorization: Bearer <access>")
    refresh = serializers.CharField(help_text="for POST /api/v1/auth/token/refresh/")


class TokenRefreshSchema(Schema):
    refresh = serializers.CharField(write_only=True)


class AccessTokenSchema(Schema):
    access = serializers.CharField()


class ApiRootSchema(Schema):
    version = serializers.CharField(
        help_text="the API's version: its URLs are under /api/v<version>/"
    )
    resources = serializers.DictField(
        child=serializers.URLField(),
        help_text="each resource's URL, by name (jobs, schedules, ...)",
    )
    documentation = serializers.DictField(
        child=serializers.URLField(),
        help_text="the OpenAPI document (schema), Swagger UI (swagger_ui) and Redoc (redoc)",
    )
