from __future__ import annotations

from typing import Any
from uuid import UUID

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api.serializers import execution_output
from executions.selectors import execution_list_for_job
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.auth import AuthenticatedRequest
from jobplatform.errors import InvalidInput
from jobs import services
from jobs.api.filters import JobFilter
from jobs.api.serializers import (
    JobLinks,
    job_location,
    job_output,
    job_summary_row_output,
    parse_bulk_submission,
    parse_job_change,
    parse_submission,
)
from jobs.models import Job
from jobs.selectors import job_get_visible, job_summary_rows
from jobs.steps import registered_steps


def _job_detail(request: Request, job: Job, *, new: bool = False) -> dict[str, Any]:
    """The job with every attempt; ``new``: it was just created, so it has none to look up."""
    data = job_output(job, JobLinks(request))
    data["executions"] = [] if new else execution_output(execution_list_for_job(job_id=job.id))
    return data


class JobListCreateApi(APIView):
    """GET: the caller's jobs, newest first, filtered. POST: submit a job."""

    required_permissions = {"GET": "jobs.view_job", "POST": "jobs.add_job"}

    filterset_class = JobFilter

    def get(self, request: AuthenticatedRequest) -> Response:
        jobs = job_summary_rows(user=request.user)
        jobs = DjangoFilterBackend().filter_queryset(request, jobs, self)
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        links = JobLinks(request)
        rows = [job_summary_row_output(row, links) for row in page or []]
        return paginator.get_paginated_response(rows)

    def post(self, request: AuthenticatedRequest) -> Response:
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

    required_permissions = {"POST": "jobs.add_job"}

    def post(self, request: AuthenticatedRequest) -> Response:
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

    required_permissions = {"GET": "jobs.view_job", "PATCH": "jobs.change_job"}

    def get(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(_job_detail(request, job))

    def patch(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        services.job_reschedule(job_id=job.id, run_at=parse_job_change(request.data))
        return Response(_job_detail(request, job_get_visible(job_id=job_id, user=request.user)))


class JobCancelApi(APIView):
    """Cancel a job that has not finished; cancelling a cancelled job again is a no-op."""

    required_permissions = {"POST": "jobs.change_job"}

    def post(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        services.job_cancel(job_id=job.id)  # Conflict if it finished otherwise
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(_job_detail(request, job))


class StepTypeListApi(APIView):
    """The step types a job may use, with the JSON Schema of their parameters."""

    required_permissions = {"GET": "jobs.view_job"}

    def get(self, request: Request) -> Response:
        return Response(
            {
                "results": [
                    {"name": s.name, "description": s.description, "params_schema": s.schema}
                    for s in registered_steps()
                ]
            }
        )
