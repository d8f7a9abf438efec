from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api.serializers import execution_output
from executions.selectors import execution_list_for_job
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.errors import Conflict, InvalidInput
from jobs import services
from jobs.api.filters import JobFilter
from jobs.api.serializers import (
    JobLinks,
    ScheduleFiringOutput,
    ScheduleOutput,
    job_location,
    job_output,
    job_summary_output,
    job_summary_row_output,
    parse_bulk_submission,
    parse_job_change,
    parse_pause,
    parse_schedule,
    parse_submission,
)
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.selectors import (
    job_get_visible,
    job_summary_rows,
    schedule_get_visible,
    schedule_list,
    schedule_recent_firings,
    schedule_recent_jobs,
)
from jobs.steps import registered_steps


def _job_detail(request: Request, job: Job, *, new: bool = False) -> dict:
    """The job with every attempt; ``new``: it was just created, so it has none to look up."""
    data = job_output(job, JobLinks(request))
    data["executions"] = [] if new else execution_output(execution_list_for_job(job_id=job.id))
    return data


class JobListCreateApi(APIView):
    """GET: the caller's jobs, newest first, filtered. POST: submit a job."""

    filterset_class = JobFilter

    def get(self, request: Request) -> Response:
        jobs = job_summary_rows(user=request.user)
        jobs = DjangoFilterBackend().filter_queryset(request, jobs, self)
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        links = JobLinks(request)
        rows = [job_summary_row_output(row, links) for row in page]
        return paginator.get_paginated_response(rows)

    def post(self, request: Request) -> Response:
        spec, in_body = parse_submission(request.data)
        key = _idempotency_key(request, in_body)
        submission = services.job_submit(owner=request.user, spec=spec, idempotency_key=key)
        job = submission.job
        return Response(
            _job_detail(request, job, new=submission.created),
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers={"Location": job_location(job.id)},
        )


class JobBulkCreateApi(APIView):
    """POST {"jobs": [submission, ...]}: up to JOBPLATFORM_MAX_BULK_JOBS jobs, all or none."""

    def post(self, request: Request) -> Response:
        ids = services.job_submit_many(
            owner=request.user, specs=parse_bulk_submission(request.data)
        )
        return Response({"count": len(ids), "ids": [str(i) for i in ids]}, status=201)


def _idempotency_key(request: Request, in_body: str | None) -> str | None:
    """The ``Idempotency-Key`` header or the ``idempotency_key`` field; both must agree."""
    in_header = request.headers.get("Idempotency-Key")
    if in_header and in_body and in_header != in_body:
        raise InvalidInput(
            "JOBS.IDEMPOTENCY_KEY_MISMATCH",
            "the Idempotency-Key header and the idempotency_key field differ",
        )
    key = in_header or in_body
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidInput("JOBS.INVALID_IDEMPOTENCY_KEY", "an idempotency key has 1-255 chars")
    return key


class JobDetailApi(APIView):
    """GET: a job with its attempts. PATCH {"run_at"}: move a job that is still PENDING."""

    def get(self, request: Request, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(_job_detail(request, job))

    def patch(self, request: Request, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        run_at = parse_job_change(request.data)
        if not services.job_reschedule(job_id=job.id, run_at=run_at):
            job.refresh_from_db(fields=["status"])
            raise Conflict(
                "JOBS.NOT_PENDING",
                f"run_at can change only while the job is pending; it is {job.status}",
                {"status": job.status},
            )
        return Response(_job_detail(request, job_get_visible(job_id=job_id, user=request.user)))


class JobCancelApi(APIView):
    """Cancel a job that has not finished; cancelling a cancelled job again is a no-op."""

    def post(self, request: Request, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        if not services.job_cancel(job_id=job.id):
            job.refresh_from_db(fields=["status"])
            if job.status != Job.Status.CANCELLED:
                raise Conflict(
                    "JOBS.NOT_CANCELLABLE",
                    f"the job has already finished ({job.status})",
                    {"status": job.status},
                )
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(_job_detail(request, job))


class StepTypeListApi(APIView):
    """The step types a job may use, with the JSON Schema of their parameters."""

    def get(self, request: Request) -> Response:
        return Response(
            {
                "results": [
                    {"name": s.name, "description": s.description, "params_schema": s.schema}
                    for s in registered_steps()
                ]
            }
        )


# --- schedules ---------------------------------------------------------------------------------


def _schedules_output(request: Request, schedules: list[Schedule]) -> list[dict[str, Any]]:
    recent = schedule_recent_jobs(schedule_ids=[s.id for s in schedules])
    context = {"request": request, "recent_jobs": recent}
    return ScheduleOutput(schedules, many=True, context=context).data


def _schedule_detail(request: Request, schedule_id: UUID) -> dict[str, Any]:
    schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
    data = _schedules_output(request, [schedule])[0]
    firings: list[ScheduleFiring] = schedule_recent_firings(schedule_id=schedule.id)
    data["recent_firings"] = ScheduleFiringOutput(firings, many=True).data
    return data


class ScheduleListCreateApi(APIView):
    """GET: the caller's schedules, newest first. POST: create one."""

    def get(self, request: Request) -> Response:
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(schedule_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(_schedules_output(request, list(page or [])))

    def post(self, request: Request) -> Response:
        spec = services.ScheduleSpec(**parse_schedule(request.data, partial=False))
        schedule = services.schedule_create(owner=request.user, spec=spec)
        return Response(
            _schedule_detail(request, schedule.id),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("schedule-detail", args=[schedule.id])},
        )


class ScheduleDetailApi(APIView):
    """GET with next fire times, recent jobs and firings; PATCH any field; DELETE."""

    def get(self, request: Request, schedule_id: UUID) -> Response:
        return Response(_schedule_detail(request, schedule_id))

    def patch(self, request: Request, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        changes = parse_schedule(request.data, partial=True, job_name=schedule.name)
        spec = replace(services.schedule_spec(schedule=schedule), **changes)
        services.schedule_update(schedule_id=schedule.id, spec=spec)
        return Response(_schedule_detail(request, schedule.id))

    def delete(self, request: Request, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_delete(schedule_id=schedule.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseApi(APIView):
    """POST {"note"?}: stop firing until resumed. Pausing a paused schedule is a no-op."""

    def post(self, request: Request, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_pause(schedule_id=schedule.id, note=parse_pause(request.data))
        return Response(_schedule_detail(request, schedule.id))


class ScheduleResumeApi(APIView):
    """POST: fire again from the next tick; the ticks that fell while paused do not run."""

    def post(self, request: Request, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        services.schedule_resume(schedule_id=schedule.id)
        return Response(_schedule_detail(request, schedule.id))


class ScheduleTriggerApi(APIView):
    """POST: fire now, under the overlap policy. 201 with the job; 202 when buffer_one keeps the
    tick waiting for the unfinished job; 409 SCHEDULES.OVERLAP_SKIPPED when the policy skips it."""

    def post(self, request: Request, schedule_id: UUID) -> Response:
        schedule = schedule_get_visible(schedule_id=schedule_id, user=request.user)
        fired = services.schedule_trigger(schedule_id=schedule.id).fired[-1]
        if fired.outcome == ScheduleFiring.Outcome.SKIPPED_OVERLAP:
            raise Conflict(
                "SCHEDULES.OVERLAP_SKIPPED",
                f"overlap is {schedule.overlap} and an earlier job of the schedule is unfinished",
                {"overlap": schedule.overlap},
            )
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
