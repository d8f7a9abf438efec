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
from jobplatform import logs
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.auth import AuthenticatedRequest
from jobplatform.errors import InvalidInput
from jobplatform.tracing import current_trace_id
from jobs import services
from jobs.api.filters import JobFilter
from jobs.api.serializers import (
    JobLinks,
    job_location,
    job_output,
    job_summary_row_output,
    parse_bulk_submission,
    parse_job_change,
    parse_queue_change,
    parse_submission,
    queue_output,
    waiting_for_output,
)
from jobs.models import Job
from jobs.selectors import (
    job_get_visible,
    job_summary_rows,
    job_waiting_for,
    owner_limits,
    queue_get,
    queue_list,
)
from jobs.services import queues
from jobs.steps import registered_steps


def _job_detail(request: Request, job: Job, *, new: bool = False) -> dict[str, Any]:
    """The job with every attempt and why it waits; ``new``: it was just created, so it has no
    attempt to look up, and its submission's answer leaves out ``waiting_for``."""
    data = job_output(job, JobLinks(request))
    if new:  # the submission's answer: nothing to look up, on the hot path
        data["executions"] = []
        return data
    # Why it is still waiting (pending or retrying), computed now for this one job.
    data["waiting_for"] = waiting_for_output(job_waiting_for(job=job))
    data["executions"] = execution_output(execution_list_for_job(job_id=job.id))
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
        submission = services.job_submit(
            owner=request.user, spec=spec, idempotency_key=key, trace_id=current_trace_id()
        )
        job = submission.job
        logs.bind(job_id=str(job.id))  # the request's log line names the job
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
            owner=request.user,
            specs=parse_bulk_submission(request.data),
            trace_id=current_trace_id(),
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


class QueueListApi(APIView):
    """The queues: paused or not, their in-flight cap, and their jobs in flight."""

    required_permissions = {"GET": "jobs.view_queue"}

    def get(self, request: Request) -> Response:
        return Response({"results": [queue_output(q, request) for q in queue_list()]})


class QueueDetailApi(APIView):
    """GET: one queue. PATCH {"max_in_flight": n|null} (admins): its in-flight cap."""

    required_permissions = {"GET": "jobs.view_queue", "PATCH": "jobs.change_queue"}

    def get(self, request: Request, name: str) -> Response:
        return Response(queue_output(queue_get(name=name), request))

    def patch(self, request: Request, name: str) -> Response:
        queues.queue_set_max_in_flight(name=name, max_in_flight=parse_queue_change(request.data))
        return Response(queue_output(queue_get(name=name), request))


class QueuePauseApi(APIView):
    """Stop releasing the queue's jobs (operators); running jobs finish. Idempotent."""

    required_permissions = {"POST": "jobs.pause_queue"}

    def post(self, request: Request, name: str) -> Response:
        queues.queue_pause(name=name)
        return Response(queue_output(queue_get(name=name), request))


class QueueResumeApi(APIView):
    """Release the queue's jobs again (operators). Idempotent."""

    required_permissions = {"POST": "jobs.pause_queue"}

    def post(self, request: Request, name: str) -> Response:
        queues.queue_resume(name=name)
        return Response(queue_output(queue_get(name=name), request))


class LimitsApi(APIView):
    """The caller's admission caps and fair-share weight, and its unfinished jobs."""

    required_permissions = {"GET": None}

    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(owner_limits(user=request.user))
