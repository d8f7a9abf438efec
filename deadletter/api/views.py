from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import QueryDict
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from deadletter import selectors, services
from deadletter.api import schemas
from deadletter.api.filters import DeadLetterFilter
from deadletter.api.serializers import (
    ActionOutput,
    BulkInput,
    DeadLetterDetailOutput,
    DeadLetterOutput,
    DeadLetterSummaryOutput,
    DismissInput,
    GroupListOutput,
    GroupOutput,
    RetryInput,
)
from deadletter.models import DeadLetter
from executions.api.serializers import execution_output
from executions.selectors import execution_list_for_job
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.auth import AuthenticatedRequest
from jobs.api import schemas as job_schemas
from jobs.api.views import job_detail
from jobs.selectors import job_get_visible

OPEN = DeadLetter.State.OPEN


class DeadLetterPagination(CreatedCursorPagination):
    # The id breaks ties between entries recorded in the same microsecond (bulk failures).
    ordering = ("-created_at", "-id")


def _detail(request: AuthenticatedRequest, dead_letter_id: int) -> dict[str, Any]:
    """The entry, its audit trail and its job's whole attempt history (each attempt's steps)."""
    dead = selectors.dead_letter_get_visible(dead_letter_id=dead_letter_id, user=request.user)
    data = DeadLetterOutput(dead, context={"request": request}).data
    data["actions"] = ActionOutput(
        selectors.dead_letter_actions(dead_letter_id=dead.id), many=True
    ).data
    data["executions"] = execution_output(execution_list_for_job(job_id=dead.job_id))
    return data


def _filtered(
    params: dict[str, Any] | QueryDict, user: User, *, default_state: str | None = None
) -> QuerySet[DeadLetter]:
    """The visible entries matching list parameters; a bad value is a 400 API.VALIDATION_ERROR."""
    data = QueryDict(mutable=True)
    for name, value in params.items():
        if isinstance(params, QueryDict):
            data.setlist(name, params.getlist(name))
        else:  # a bulk request's JSON ``filter``: lists become the comma form of the query string
            data[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if default_state and "state" not in data:
        data["state"] = default_state
    filterset = DeadLetterFilter(data, queryset=selectors.dead_letter_list(user=user))
    if not filterset.is_valid():
        raise serializers.ValidationError(filterset.errors)
    return filterset.qs


class DeadLetterListApi(APIView):
    """Dead letters of the caller's and their teams' jobs (admins: all), newest first, filtered,
    cursor-paginated."""

    required_permissions = {"GET": "deadletter.view_deadletter"}

    filterset_class = DeadLetterFilter
    pagination_class = DeadLetterPagination

    @extend_schema(
        operation_id="dead_letters_list", summary="Dead letters", responses=DeadLetterSummaryOutput
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        entries = DjangoFilterBackend().filter_queryset(
            request, selectors.dead_letter_list(user=request.user), self
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(
            DeadLetterSummaryOutput(page, many=True, context={"request": request}).data
        )


NOT_FOUND = {404: ["DEADLETTER.NOT_FOUND"]}
# A bulk request's selection: its shape, and its filter's values.
BULK_ERRORS = {400: ["API.VALIDATION_ERROR"]}


class DeadLetterDetailApi(APIView):
    required_permissions = {"GET": "deadletter.view_deadletter"}
    error_codes = {"GET": NOT_FOUND}

    @extend_schema(
        operation_id="dead_letters_get",
        summary="A dead letter, its audit trail and its job's attempts",
        responses=DeadLetterDetailOutput,
    )
    def get(self, request: AuthenticatedRequest, dead_letter_id: int) -> Response:
        return Response(_detail(request, dead_letter_id))


class DeadLetterRetryApi(APIView):
    """Send the job back to the queue, optionally with a new max_retries, input or from_step."""

    required_permissions = {"POST": "deadletter.change_deadletter"}
    error_codes = {
        "POST": {
            **NOT_FOUND,
            400: [
                "API.VALIDATION_ERROR",
                "DEADLETTER.INVALID_FROM_STEP",
                "JOBS.INVALID_RETRY_POLICY",
                "JOBS.INVALID_FROM_STEP",
                "JOBS.INPUT_TOO_LARGE",
            ],
            409: ["DEADLETTER.JOB_NOT_FAILED", "DEADLETTER.ALREADY_RETRIED"],
        }
    }

    @extend_schema(
        operation_id="dead_letters_retry",
        summary="Retry a dead letter's job",
        request=RetryInput,
        responses=DeadLetterDetailOutput,
    )
    def post(self, request: AuthenticatedRequest, dead_letter_id: int) -> Response:
        dead = selectors.dead_letter_get_visible(dead_letter_id=dead_letter_id, user=request.user)
        payload = RetryInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.dead_letter_retry(
            dead_letter_id=dead.id,
            actor=request.user,
            note=payload.validated_data["note"],
            overrides=payload.overrides(),
        )
        return Response(_detail(request, dead.id))


class JobRetryApi(APIView):
    """POST /api/v1/jobs/{id}/retry/: a failed or cancelled job back to the queue, with a dead
    letter's overrides; its open dead letter, if any, is retried with it. Here, not in jobs/api:
    closing the entry is the dead-letter app's, and jobs imports neither of the apps above it."""

    required_permissions = {"POST": "jobs.change_job"}
    error_codes = {
        "POST": {
            404: ["JOBS.NOT_FOUND", "DEADLETTER.NOT_FOUND"],
            400: [
                "API.VALIDATION_ERROR",
                "JOBS.INVALID_FROM_STEP",
                "JOBS.INVALID_RETRY_POLICY",
                "JOBS.INPUT_TOO_LARGE",
                "DEADLETTER.INVALID_FROM_STEP",
            ],
            # DEADLETTER.*: another retry of the same job won the race.
            409: ["JOBS.NOT_RETRYABLE", "DEADLETTER.JOB_NOT_FAILED", "DEADLETTER.ALREADY_RETRIED"],
            **job_schemas.ADMISSION_ERRORS,
        }
    }

    @extend_schema(
        operation_id="jobs_retry",
        summary="Retry a failed or cancelled job",
        description="It resumes at the step it stopped at (or from_step), keeps its attempt "
        "numbering and gets a fresh retry budget. A failed job's open dead letter is retried "
        "with it (state retried, in its audit trail). The job is unfinished again, so the retry "
        "counts against its owner's cap like a submission: 429 JOBS.TOO_MANY_UNFINISHED with "
        "Retry-After when the cap is reached.",
        request=RetryInput,
        responses=job_schemas.JobDetailSchema,
    )
    def post(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        payload = RetryInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.job_retry_with_dead_letter(
            job_id=job.id,
            actor=request.user,
            note=payload.validated_data["note"],
            overrides=payload.overrides(),
        )
        job.refresh_from_db()
        return Response(job_detail(request, job))


class DeadLetterDismissApi(APIView):
    required_permissions = {"POST": "deadletter.change_deadletter"}
    error_codes = {
        "POST": {
            **NOT_FOUND,
            400: ["API.VALIDATION_ERROR"],
            409: ["DEADLETTER.ALREADY_DISMISSED", "DEADLETTER.ALREADY_RETRIED"],
        }
    }

    @extend_schema(
        operation_id="dead_letters_dismiss",
        summary="Dismiss a dead letter (the job stays failed)",
        request=DismissInput,
        responses=DeadLetterDetailOutput,
    )
    def post(self, request: AuthenticatedRequest, dead_letter_id: int) -> Response:
        dead = selectors.dead_letter_get_visible(dead_letter_id=dead_letter_id, user=request.user)
        payload = DismissInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.dead_letter_dismiss(
            dead_letter_id=dead.id, actor=request.user, note=payload.validated_data["note"]
        )
        return Response(_detail(request, dead.id))


def _bulk_selection(request: AuthenticatedRequest) -> tuple[QuerySet[DeadLetter], str]:
    payload = BulkInput(data=request.data)
    payload.is_valid(raise_exception=True)
    data = payload.validated_data
    visible = selectors.dead_letter_list(user=request.user)
    if "ids" in data:
        selection = visible.filter(id__in=data["ids"])
    elif "group" in data:
        selection = visible.filter(fingerprint=data["group"], state=OPEN)
    else:
        selection = _filtered(data["filter"], request.user, default_state=OPEN)
    return selection, data["note"]


class DeadLetterBulkRetryApi(APIView):
    """Retry many entries, by ids, group or filter, in batches; answers with counts."""

    required_permissions = {"POST": "deadletter.change_deadletter"}
    error_codes = {"POST": BULK_ERRORS}

    @extend_schema(
        operation_id="dead_letters_retry_many",
        summary="Retry many dead letters",
        request=BulkInput,
        responses=schemas.BulkRetriedSchema,
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        selection, note = _bulk_selection(request)
        outcome = services.dead_letter_retry_bulk(
            selection=selection, actor=request.user, note=note
        )
        return Response(
            {"selected": outcome.selected, "retried": outcome.done, "skipped": outcome.skipped}
        )


class DeadLetterBulkDismissApi(APIView):
    """Dismiss many open entries, by ids, group or filter; answers with counts."""

    required_permissions = {"POST": "deadletter.change_deadletter"}
    error_codes = {"POST": BULK_ERRORS}

    @extend_schema(
        operation_id="dead_letters_dismiss_many",
        summary="Dismiss many dead letters",
        request=BulkInput,
        responses=schemas.BulkDismissedSchema,
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        selection, note = _bulk_selection(request)
        outcome = services.dead_letter_dismiss_bulk(
            selection=selection, actor=request.user, note=note
        )
        return Response(
            {"selected": outcome.selected, "dismissed": outcome.done, "skipped": outcome.skipped}
        )


class DeadLetterGroupsApi(APIView):
    """Entries grouped by fingerprint, largest group first. Open entries unless ?state= says."""

    required_permissions = {"GET": "deadletter.view_deadletter"}

    MAX_LIMIT = 1000
    error_codes = {"GET": {400: ["API.VALIDATION_ERROR"]}}

    @extend_schema(
        operation_id="dead_letters_groups",
        summary="Dead letters grouped by fingerprint",
        parameters=[
            OpenApiParameter("limit", int, description=f"groups, 1 to {MAX_LIMIT}; 100 by default"),
            *[
                OpenApiParameter(name, str, description="as the list's filter")
                for name in DeadLetterFilter.base_filters
            ],
        ],
        responses=GroupListOutput,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        params = request.query_params.copy()
        limit = _limit(params.pop("limit", ["100"])[-1], self.MAX_LIMIT)
        entries = _filtered(params, request.user, default_state=OPEN)
        groups = selectors.dead_letter_groups(entries=entries, limit=limit)
        return Response(
            {"results": GroupOutput(groups, many=True, context={"request": request}).data}
        )


def _limit(raw: str, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise serializers.ValidationError({"limit": "an integer"}) from None
    if not 1 <= value <= maximum:
        raise serializers.ValidationError({"limit": f"between 1 and {maximum}"})
    return value


class DeadLetterStatsApi(APIView):
    """Open dead letters by reason and by queue (the jobs the caller sees)."""

    required_permissions = {"GET": "deadletter.view_deadletter"}

    @extend_schema(
        operation_id="dead_letters_stats",
        summary="Open dead letters, counted",
        responses=schemas.DeadLetterStatsSchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        entries = selectors.dead_letter_list(user=request.user)
        return Response(selectors.dead_letter_stats(entries=entries))
