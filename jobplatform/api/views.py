from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views

from jobplatform import selectors, services
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


class HealthApi(APIView):
    """Readiness, as ``/readyz``: PostgreSQL, the broker, and every migration applied."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []  # load balancers poll it

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

    def get(self, request: AuthenticatedRequest) -> Response:
        keys = selectors.api_key_list(user=request.user)
        if "user" in request.query_params:
            keys = keys.filter(user__username=request.query_params["user"])
        paginator = ApiKeyPagination()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response([api_key_output(k) for k in page or []])

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


class TokenRefreshApi(jwt_views.TokenRefreshView):
    """POST {"refresh"}: {"access"}, a new access token with the user's current roles."""

    serializer_class = TokenRefreshSerializer
