"""Schedules over HTTP: list, create, detail, edit, delete, pause, resume, trigger."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.auth import AuthenticatedRequest
from jobs.api.schemas import SUBMISSION_ERRORS
from jobs.api.serializers import JobLinks, job_location, job_summary_output
from jobs.schedules import firing, services
from jobs.schedules.api import schemas
from jobs.schedules.api.serializers import (
    ScheduleDetailOutput,
    ScheduleFiringOutput,
    ScheduleOutput,
    parse_pause,
    parse_schedule,
)
from jobs.schedules.models import Schedule, ScheduleFiring
from jobs.schedules.selectors import (
    schedule_get_visible,
    schedule_list,
    schedule_recent_firings,
    schedule_recent_jobs,
)
from jobs.selectors import job_get_visible


def _schedules_output(request: Request, schedules: list[Schedule]) -> list[dict[str, Any]]:
    recent = schedule_recent_jobs(schedule_ids=[s.id for s in schedules])
    context = {"request": request, "recent_jobs": recent}
    # many=True makes a ListSerializer whose .data is a list; the stubs type it as a dict.
    return ScheduleOutput(schedules, many=True, context=context).data  # type: ignore[return-value]


def _schedule_detail(request: AuthenticatedRequest, schedule_id: UUID) -> dict[str, Any]:
    schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
    data = _schedules_output(request, [schedule])[0]
    firings: list[ScheduleFiring] = schedule_recent_firings(schedule_id=schedule.id)
    data["recent_firings"] = ScheduleFiringOutput(firings, many=True).data
    return data


NOT_FOUND = {404: ["SCHEDULES.NOT_FOUND"]}
# A schedule's values (jobs.schedules.services) and its job template's (jobs.services).
SCHEDULE_ERRORS = (
    *SUBMISSION_ERRORS,
    "SCHEDULES.INVALID_NAME",
    "SCHEDULES.INVALID_CRON",
    "SCHEDULES.UNKNOWN_TIMEZONE",
    "SCHEDULES.INVALID_OVERLAP",
    "SCHEDULES.INVALID_JITTER",
    "SCHEDULES.NAIVE_DATETIME",
    "SCHEDULES.INVALID_WINDOW",
    "SCHEDULES.INVALID_JOB",
    "SCHEDULES.INVALID_MISFIRE",
)
LOCATION = OpenApiParameter(
    "Location", OpenApiTypes.STR, OpenApiParameter.HEADER, description="the new object's path"
)


class ScheduleListCreateApi(APIView):
    """GET: the caller's schedules, newest first. POST: create one."""

    required_permissions = {"GET": "jobs.view_schedule", "POST": "jobs.add_schedule"}
    error_codes = {"POST": {400: list(SCHEDULE_ERRORS), 409: ["SCHEDULES.NAME_TAKEN"]}}
    pagination_class = CreatedCursorPagination

    @extend_schema(operation_id="schedules_list", summary="Schedules", responses=ScheduleOutput)
    def get(self, request: AuthenticatedRequest) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(schedule_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(_schedules_output(request, list(page or [])))

    @extend_schema(
        operation_id="schedules_create",
        summary="Create a schedule",
        request=schemas.ScheduleInputSchema,
        responses={201: ScheduleDetailOutput},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        spec = services.ScheduleSpec(**parse_schedule(request.data, partial=False))
        schedule = services.schedule_create(owner=request.user, spec=spec)
        return Response(
            _schedule_detail(request, schedule.id),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("schedule-detail", args=[schedule.id])},
        )


class ScheduleDetailApi(APIView):
    """GET with next fire times, recent jobs and firings; PATCH any field; DELETE."""

    required_permissions = {
        "GET": "jobs.view_schedule",
        "PATCH": "jobs.change_schedule",
        "DELETE": "jobs.delete_schedule",
    }
    error_codes = {
        "GET": NOT_FOUND,
        "PATCH": {**NOT_FOUND, 400: list(SCHEDULE_ERRORS), 409: ["SCHEDULES.NAME_TAKEN"]},
        "DELETE": NOT_FOUND,
    }

    @extend_schema(
        operation_id="schedules_get",
        summary="A schedule with its next fire times, recent jobs and firings",
        responses=ScheduleDetailOutput,
    )
    def get(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        return Response(_schedule_detail(request, schedule_id))

    @extend_schema(
        operation_id="schedules_update",
        summary="Change a schedule",
        request=schemas.ScheduleInputSchema,
        responses=ScheduleDetailOutput,
    )
    def patch(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        changes = parse_schedule(request.data, partial=True, job_name=schedule.name)
        spec = replace(services.schedule_spec(schedule=schedule), **changes)
        services.schedule_update(schedule_id=schedule.id, spec=spec)
        return Response(_schedule_detail(request, schedule.id))

    @extend_schema(
        operation_id="schedules_delete",
        summary="Delete a schedule (its jobs stay)",
        responses={204: None},
    )
    def delete(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_delete(schedule_id=schedule.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseApi(APIView):
    """POST {"note"?}: stop firing until resumed. Pausing a paused schedule is a no-op."""

    required_permissions = {"POST": "jobs.change_schedule"}
    error_codes = {"POST": {**NOT_FOUND, 400: ["API.VALIDATION_ERROR"]}}

    @extend_schema(
        operation_id="schedules_pause",
        summary="Pause a schedule",
        request=schemas.PauseSchema,
        responses=ScheduleDetailOutput,
    )
    def post(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_pause(schedule_id=schedule.id, note=parse_pause(request.data))
        return Response(_schedule_detail(request, schedule.id))


class ScheduleResumeApi(APIView):
    """POST: fire again from the next tick; the ticks that fell while paused do not run."""

    required_permissions = {"POST": "jobs.change_schedule"}
    error_codes = {"POST": NOT_FOUND}

    @extend_schema(
        operation_id="schedules_resume",
        summary="Resume a paused schedule",
        request=None,
        responses=ScheduleDetailOutput,
    )
    def post(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_resume(schedule_id=schedule.id)
        return Response(_schedule_detail(request, schedule.id))


class ScheduleTriggerApi(APIView):
    """POST: fire now, under the overlap policy. 201 with the job; 202 when buffer_one keeps the
    tick waiting for the unfinished job; 409 SCHEDULES.OVERLAP_SKIPPED when the policy skips it."""

    required_permissions = {"POST": "jobs.change_schedule"}
    error_codes = {"POST": {**NOT_FOUND, 409: ["SCHEDULES.OVERLAP_SKIPPED"]}}

    @extend_schema(
        operation_id="schedules_trigger",
        summary="Fire a schedule now",
        request=None,
        responses={
            201: OpenApiResponse(schemas.TriggerSchema, "a job was made"),
            202: OpenApiResponse(schemas.TriggerSchema, "buffer_one: the tick waits"),
        },
    )
    def post(self, request: AuthenticatedRequest, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        # Conflict SCHEDULES.OVERLAP_SKIPPED when the overlap policy skips the tick.
        fired = firing.schedule_trigger(schedule_id=schedule.id).fired[-1]
        body: dict[str, Any] = {
            "outcome": fired.outcome,
            "scheduled_for": fired.scheduled_for,
            "job": None,
        }
        if fired.job_id is None:
            return Response(body, status=status.HTTP_202_ACCEPTED)
        job = job_get_visible(job_id=fired.job_id, user=request.user)
        body["job"] = job_summary_output(job, JobLinks(request))
        return Response(
            body,
            status=status.HTTP_201_CREATED,
            headers={"Location": job_location(job.id)},
        )
