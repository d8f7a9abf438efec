"""Rate limits and circuit breakers through the API (docs/flow-control.md).

Everyone signed in reads them; admins set rate limits; operators open and close a breaker.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobplatform.api.render import api_datetime
from jobplatform.auth import AuthenticatedRequest
from jobs.api import schemas
from jobs.selectors import (
    BreakerView,
    RateLimitView,
    breaker_get,
    breaker_list,
    rate_limit_get,
    rate_limit_list,
)
from jobs.services import dependencies


def rate_limit_output(limit: RateLimitView, request: Request) -> dict[str, Any]:
    return {
        "name": limit.name,
        "rate": limit.rate,
        "burst": limit.burst,
        "tokens": limit.tokens,
        "held": limit.held,
        "updated_at": api_datetime(limit.updated_at),
        "links": {
            "self": request.build_absolute_uri(reverse("rate-limit-detail", args=[limit.name]))
        },
    }


def breaker_output(breaker: BreakerView, request: Request) -> dict[str, Any]:
    def link(name: str) -> str:
        return request.build_absolute_uri(reverse(name, args=[breaker.host]))

    return {
        "host": breaker.host,
        "state": breaker.state,
        "failures": breaker.failures,
        "window_started_at": api_datetime(breaker.window_started_at),
        "opened_at": api_datetime(breaker.opened_at),
        "retry_at": api_datetime(breaker.retry_at),
        "manual": breaker.manual,
        "probe_job": str(breaker.probe_job) if breaker.probe_job else None,
        "probe_at": api_datetime(breaker.probe_at),
        "held": breaker.held,
        "links": {
            "self": link("breaker-detail"),
            "open": link("breaker-open"),
            "close": link("breaker-close"),
        },
    }


def parse_rate_limit(data: Any) -> tuple[float, int | None]:
    """PUT /rate-limits/{name}/: ``{"rate": <tokens a second>, "burst": <integer, optional>}``."""
    if (
        not isinstance(data, dict)
        or "rate" not in data
        or not data.keys() <= {"rate", "burst"}
        or isinstance(data["rate"], bool)
        or not isinstance(data["rate"], int | float)
        or not (data.get("burst") is None or type(data["burst"]) is int)
    ):
        raise serializers.ValidationError(
            {"rate": ['send {"rate": <tokens a second>, "burst": <an integer, optional>}']}
        )
    return float(data["rate"]), data.get("burst")


LIMIT_NOT_FOUND = {404: ["LIMITS.NOT_FOUND"]}


class RateLimitListApi(APIView):
    """The rate limits, with the tokens in their buckets and the jobs they hold."""

    required_permissions = {"GET": "jobs.view_ratelimit"}

    @extend_schema(
        operation_id="rate_limits_list",
        summary="Rate limits",
        responses=schemas.RateLimitListSchema,
    )
    def get(self, request: Request) -> Response:
        return Response({"results": [rate_limit_output(r, request) for r in rate_limit_list()]})


class RateLimitDetailApi(APIView):
    """GET: one limit. PUT {"rate", "burst"} (admins): create or change it. DELETE (admins)."""

    required_permissions = {
        "GET": "jobs.view_ratelimit",
        "PUT": "jobs.change_ratelimit",
        "DELETE": "jobs.delete_ratelimit",
    }
    error_codes = {
        "GET": LIMIT_NOT_FOUND,
        "PUT": {
            400: [
                "API.VALIDATION_ERROR",
                "LIMITS.INVALID_NAME",
                "LIMITS.INVALID_RATE",
                "LIMITS.INVALID_BURST",
            ]
        },
        "DELETE": LIMIT_NOT_FOUND,
    }

    @extend_schema(
        operation_id="rate_limits_get", summary="A rate limit", responses=schemas.RateLimitSchema
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(rate_limit_output(rate_limit_get(name=name), request))

    @extend_schema(
        operation_id="rate_limits_set",
        summary="Create or change a rate limit",
        description="Admins. Its bucket starts full again.",
        request=schemas.RateLimitChangeSchema,
        responses=schemas.RateLimitSchema,
    )
    def put(self, request: AuthenticatedRequest, name: str) -> Response:
        rate, burst = parse_rate_limit(request.data)
        limit = dependencies.rate_limit_set(name=name, rate=rate, burst=burst, actor=request.user)
        return Response(rate_limit_output(rate_limit_get(name=limit.name), request))

    @extend_schema(
        operation_id="rate_limits_delete",
        summary="Delete a rate limit",
        description="Admins. The jobs it held are released.",
        responses={204: None},
    )
    def delete(self, request: AuthenticatedRequest, name: str) -> Response:
        dependencies.rate_limit_delete(name=name, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BreakerListApi(APIView):
    """The circuit breakers of the http hosts that failed, with their state."""

    required_permissions = {"GET": "jobs.view_circuitbreaker"}

    @extend_schema(
        operation_id="breakers_list",
        summary="Circuit breakers",
        responses=schemas.BreakerListSchema,
    )
    def get(self, request: Request) -> Response:
        return Response({"results": [breaker_output(b, request) for b in breaker_list()]})


class BreakerDetailApi(APIView):
    """One host's breaker (closed if it never failed)."""

    required_permissions = {"GET": "jobs.view_circuitbreaker"}

    @extend_schema(
        operation_id="breakers_get", summary="A host's breaker", responses=schemas.BreakerSchema
    )
    def get(self, request: Request, host: str) -> Response:
        return Response(breaker_output(breaker_get(host=host), request))


class BreakerOpenApi(APIView):
    """Open the host's breaker by hand (operators): its jobs wait until it is closed."""

    required_permissions = {"POST": "jobs.operate_circuitbreaker"}
    error_codes = {"POST": {400: ["BREAKERS.INVALID_HOST"]}}

    @extend_schema(
        operation_id="breakers_open",
        summary="Open a host's breaker",
        description="Operators. Its jobs wait until an operator closes it.",
        request=None,
        responses=schemas.BreakerSchema,
    )
    def post(self, request: AuthenticatedRequest, host: str) -> Response:
        dependencies.breaker_open(host=host, actor=request.user)
        return Response(breaker_output(breaker_get(host=host), request))


class BreakerCloseApi(APIView):
    """Close the host's breaker (operators): its held jobs are released."""

    required_permissions = {"POST": "jobs.operate_circuitbreaker"}
    error_codes = {"POST": {400: ["BREAKERS.INVALID_HOST"]}}

    @extend_schema(
        operation_id="breakers_close",
        summary="Close a host's breaker",
        description="Operators. The jobs it held are released.",
        request=None,
        responses=schemas.BreakerSchema,
    )
    def post(self, request: AuthenticatedRequest, host: str) -> Response:
        dependencies.breaker_close(host=host, actor=request.user)
        return Response(breaker_output(breaker_get(host=host), request))
