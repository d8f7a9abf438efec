from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views

from jobplatform import selectors, services
from jobplatform.api import schemas
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.api.serializers import (
    ApiKeyInput,
    TokenObtainSerializer,
    TokenRefreshSerializer,
    api_key_output,
)
from jobplatform.auth import AuthenticatedRequest
from jobplatform.errors import Forbidden, InvalidInput
from jobplatform.health import readiness
from jobplatform.liveness import process_list
from jobplatform.models import ApiKey, ProcessRole
from jobplatform.roles import ACCESS_ALL_OWNERS

# The API root's directory: a name for each resource, and its URL name.
RESOURCES = {
    "jobs": "job-list",
    "jobs_bulk": "job-bulk",
    "job_stats": "job-stats",
    "callback_key": "callback-key",
    "steps": "step-list",
    "queues": "queue-list",
    "limits": "limits",
    "rate_limits": "rate-limit-list",
    "breakers": "breaker-list",
    "schedules": "schedule-list",
    "dead_letters": "dead-letter-list",
    "dead_letter_groups": "dead-letter-groups",
    "dead_letter_stats": "dead-letter-stats",
    "keys": "api-key-list",
    "token": "token-obtain",
    "token_refresh": "token-refresh",
    "health": "health",
    "health_processes": "health-processes",
}
DOCUMENTATION = {"schema": "api-schema", "swagger_ui": "api-docs", "redoc": "api-redoc"}


class ApiRootApi(APIView):
    """GET /api/v1/: what the API offers and where, so its base URL answers something useful.
    No credentials needed: it names URLs, never data."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="api_root",
        summary="The resources and their URLs",
        auth=[],
        responses=schemas.ApiRootSchema,
    )
    def get(self, request: Request) -> Response:
        url = request.build_absolute_uri
        return Response(
            {
                "version": "1",
                "resources": {name: url(reverse(route)) for name, route in RESOURCES.items()},
                "documentation": {
                    name: url(reverse(route)) for name, route in DOCUMENTATION.items()
                },
            }
        )


class HealthApi(APIView):
    """Readiness, as ``/readyz``: PostgreSQL, the broker, and every migration applied."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []  # load balancers poll it

    @extend_schema(
        operation_id="health",
        summary="Readiness: PostgreSQL, the broker and the migrations",
        auth=[],
        responses={
            200: OpenApiResponse(schemas.HealthSchema, "all ready"),
            503: OpenApiResponse(schemas.HealthSchema, "one of them is not"),
        },
    )
    def get(self, request: Request) -> Response:
        ready, checks = readiness()
        return Response(
            {"status": "ok" if ready else "degraded", "checks": checks},
            status=200 if ready else 503,
        )


class ProcessHealthApi(APIView):
    """Every worker, dispatcher and beat process known, alive or not; 503 while a role has no
    live process. The whole platform's state, so it asks what seeing every owner's work asks
    (the admin role, or a group an installation gives that permission)."""

    required_permissions = {"GET": ACCESS_ALL_OWNERS}

    @extend_schema(
        operation_id="health_processes",
        summary="Workers, dispatchers and beats, by their heartbeats",
        responses={
            200: OpenApiResponse(schemas.ProcessHealthSchema, "every role has a live process"),
            503: OpenApiResponse(schemas.ProcessHealthSchema, "a role has no live process"),
        },
    )
    def get(self, request: Request) -> Response:
        processes = process_list()
        alive = {role: 0 for role in ProcessRole.values}
        for process in processes:
            alive[process.role] += int(process.alive)
        healthy = all(alive.values())
        return Response(
            {
                "status": "ok" if healthy else "degraded",
                "alive": alive,
                "processes": [
                    {
                        "role": p.role,
                        "name": p.name,
                        "hostname": p.hostname,
                        "pid": p.pid,
                        "started_at": p.started_at,
                        "last_beat_at": p.beat_at,
                        "seconds_since_beat": round(p.age, 1),
                        "alive": p.alive,
                        "details": p.details,
                    }
                    for p in processes
                ],
            },
            status=200 if healthy else 503,
        )


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyPagination(CreatedCursorPagination):
    ordering = ("-created",)


class ApiKeyListCreateApi(APIView):
    """GET: the caller's API keys (an admin: everyone's, ``?user=`` narrows). POST: a new key,
    shown once in the answer's ``key``; an admin may name another ``user``."""

    required_permissions = {"GET": None, "POST": None}
    error_codes = {
        "POST": {
            400: [
                "API.VALIDATION_ERROR",
                "KEYS.INVALID_SCOPES",
                "KEYS.INVALID_NAME",
                "KEYS.EXPIRY_IN_PAST",
                "KEYS.UNKNOWN_USER",
            ],
            403: ["KEYS.CREATED_WITH_API_KEY"],
        }
    }
    pagination_class = ApiKeyPagination

    @extend_schema(
        operation_id="keys_list",
        summary="API keys",
        parameters=[OpenApiParameter("user", str, description="an admin's: one user's keys")],
        responses=schemas.ApiKeySchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        keys = selectors.api_key_list(user=request.user)
        if "user" in request.query_params:
            keys = keys.filter(user__username=request.query_params["user"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response([api_key_output(k) for k in page or []])

    @extend_schema(
        operation_id="keys_create",
        summary="Create an API key",
        request=ApiKeyInput,
        responses={201: schemas.NewApiKeySchema},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        if isinstance(request.auth, ApiKey):
            # A key that could mint keys would outlive its own revocation.
            raise Forbidden(
                "KEYS.CREATED_WITH_API_KEY",
                "an API key cannot create API keys: use a token, a JWT or the admin",
            )
        payload = ApiKeyInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        owner = request.user
        if data.get("user", owner.get_username()) != owner.get_username():
            owner = _other_user(request, data["user"])
        new = services.api_key_create(
            user=owner,
            name=data["name"],
            scopes=data.get("scopes", [ApiKey.Scope.READ, ApiKey.Scope.WRITE]),
            expires_at=data.get("expires_at"),
            actor=request.user,
        )
        return Response({**api_key_output(new.api_key), "key": new.key}, status=201)


def _other_user(request: AuthenticatedRequest, username: str) -> User:
    """The user an admin names to create a key for."""
    if not request.user.has_perm("jobplatform.add_apikey"):
        raise Forbidden(
            "AUTH.PERMISSION_DENIED",
            "only an admin creates keys for other users",
            {"permission": "jobplatform.add_apikey"},
        )
    other = User.objects.filter(username=username).first()
    if other is None:
        raise InvalidInput("KEYS.UNKNOWN_USER", f"no user {username}")
    return other


class ApiKeyRevokeApi(APIView):
    """POST: revoke a key (the caller's own; an admin: anyone's). Revoking twice is a no-op."""

    required_permissions = {"POST": None}
    error_codes = {"POST": {404: ["KEYS.NOT_FOUND"]}}

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key",
        request=None,
        responses=schemas.ApiKeySchema,
    )
    def post(self, request: AuthenticatedRequest, prefix: str) -> Response:
        api_key = selectors.api_key_get_visible(prefix=prefix, user=request.user)
        if api_key.user_id != request.user.pk and not request.user.has_perm(
            "jobplatform.change_apikey"
        ):
            raise Forbidden(
                "AUTH.PERMISSION_DENIED",
                "only an admin revokes other users' keys",
                {"permission": "jobplatform.change_apikey"},
            )
        services.api_key_revoke(prefix=api_key.prefix, actor=request.user)
        api_key = selectors.api_key_get_visible(prefix=prefix, user=request.user)
        return Response(api_key_output(api_key))


# --- JWT ---------------------------------------------------------------------------------------


class TokenObtainApi(jwt_views.TokenObtainPairView):
    """POST {"username", "password"}: {"access", "refresh"}, both carrying the user's roles.
    No credentials needed; throttled per client address (JOBPLATFORM_THROTTLE_ANON_RATE)."""

    serializer_class = TokenObtainSerializer
    error_codes = {"POST": {400: ["API.VALIDATION_ERROR"], 401: ["AUTH.INVALID_CREDENTIALS"]}}

    @extend_schema(
        operation_id="token_obtain",
        summary="Sign in for a JWT pair",
        auth=[],
        request=schemas.TokenObtainSchema,
        responses=schemas.TokenPairSchema,
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class TokenRefreshApi(jwt_views.TokenRefreshView):
    """POST {"refresh"}: {"access"}, a new access token with the user's current roles."""

    serializer_class = TokenRefreshSerializer
    error_codes = {"POST": {400: ["API.VALIDATION_ERROR"], 401: ["AUTH.INVALID_CREDENTIALS"]}}

    @extend_schema(
        operation_id="token_refresh",
        summary="A new access token",
        auth=[],
        request=schemas.TokenRefreshSchema,
        responses=schemas.AccessTokenSchema,
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)
