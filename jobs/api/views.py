from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api.serializers import execution_output
from executions.selectors import execution_list_for_job
from jobplatform import logs
from jobplatform.api.pagination import CreatedCursorPagination
from jobplatform.auth import AuthenticatedRequest
from jobplatform.errors import InvalidInput, NotFound
from jobplatform.tracing import current_trace_id
from jobs import services
from jobs.api import schemas
from jobs.api.filters import JobFilter
from jobs.api.serializers import (
    JobLinks,
    callback_output,
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
from jobs.callbacks.selectors import callback_list_for_job
from jobs.callbacks.services import callback_key
from jobs.models import Job
from jobs.selectors import (
    job_get_visible,
    job_list,
    job_stats,
    job_summary_rows,
    job_waiting_for,
    owner_limits,
    queue_get,
    queue_list,
)
from jobs.services import queues
from jobs.steps import registered_steps


def job_detail(request: Request, job: Job, *, new: bool = False) -> dict[str, Any]:
    """The job with every attempt and why it waits, as every job action answers; ``new``: it was
    just created, so it has no attempt to look up, and its answer leaves out ``waiting_for``."""
    data = job_output(job, JobLinks(request))
    if new:  # the submission's answer: nothing to look up, on the hot path
        data["executions"] = []
        return data
    # Why it is still waiting (pending or retrying), computed now for this one job.
    data["waiting_for"] = waiting_for_output(job_waiting_for(job=job))
    data["executions"] = execution_output(execution_list_for_job(job_id=job.id))
    return data


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="1 to 255 characters. The same key and the same body answer the same job(s) "
    "(200) for JOBPLATFORM_IDEMPOTENCY_TTL_HOURS; another body with the key is a 409.",
)
LOCATION = OpenApiParameter(
    "Location", OpenApiTypes.STR, OpenApiParameter.HEADER, description="the job's URL path"
)
JOB_NOT_FOUND = {404: ["JOBS.NOT_FOUND"]}
QUEUE_NOT_FOUND = {404: ["QUEUES.NOT_FOUND"]}


class JobListCreateApi(APIView):
    """GET: the caller's jobs, newest first, filtered. POST: submit a job."""

    required_permissions = {"GET": "jobs.view_job", "POST": "jobs.add_job"}
    error_codes = {
        "POST": {
            400: [
                *schemas.SUBMISSION_ERRORS,
                "JOBS.IDEMPOTENCY_KEY_MISMATCH",
                "JOBS.INVALID_IDEMPOTENCY_KEY",
            ],
            409: ["JOBS.IDEMPOTENCY_KEY_REUSED", "JOBS.IDEMPOTENCY_KEY_BUSY"],
            **schemas.ADMISSION_ERRORS,
        }
    }

    filterset_class = JobFilter
    pagination_class = CreatedCursorPagination

    @extend_schema(
        operation_id="jobs_list",
        summary="List jobs",
        description="The caller's jobs and their teams' (admins: everyone's), newest first.",
        responses=schemas.JobSummarySchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        jobs = job_summary_rows(user=request.user)
        jobs = DjangoFilterBackend().filter_queryset(request, jobs, self)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs, request, view=self)
        links = JobLinks(request)
        rows = [job_summary_row_output(row, links) for row in page or []]
        return paginator.get_paginated_response(rows)

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a job",
        description="Stored pending; the dispatcher releases it when run_at comes. 201: a new "
        "job; 200: the job an earlier submission with the same idempotency key made (answered "
        "past the caps too). 429 JOBS.TOO_MANY_UNFINISHED with Retry-After: the owner's or the "
        "platform's cap on unfinished jobs is reached (GET /api/v1/limits/).",
        parameters=[IDEMPOTENCY_KEY],
        request=schemas.JobSubmissionSchema,
        responses={
            201: OpenApiResponse(schemas.JobDetailSchema, "the new job"),
            200: OpenApiResponse(schemas.JobDetailSchema, "the job of the same key and body"),
        },
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        spec, in_body = parse_submission(request.data)
        key = _idempotency_key(request, in_body)
        submission = services.job_submit(
            owner=request.user, spec=spec, idempotency_key=key, trace_id=current_trace_id()
        )
        job = submission.job
        logs.bind(job_id=str(job.id))  # the request's log line names the job
        return Response(
            job_detail(request, job, new=submission.created),
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers={"Location": job_location(job.id)},
        )


class JobBulkCreateApi(APIView):
    """POST {"jobs": [submission, ...]}: up to JOBPLATFORM_MAX_BULK_JOBS jobs, all or none. With
    an idempotency key (header or field), a repeat of the same batch answers its jobs (200)."""

    required_permissions = {"POST": "jobs.add_job"}
    error_codes = {
        "POST": {
            400: [
                *schemas.SUBMISSION_ERRORS,
                "JOBS.INVALID_BULK_SIZE",
                "JOBS.IDEMPOTENCY_KEY_MISMATCH",
                "JOBS.INVALID_IDEMPOTENCY_KEY",
            ],
            409: ["JOBS.IDEMPOTENCY_KEY_REUSED", "JOBS.IDEMPOTENCY_KEY_BUSY"],
            **schemas.ADMISSION_ERRORS,
        }
    }

    @extend_schema(
        operation_id="jobs_submit_bulk",
        summary="Submit many jobs",
        description="All or none: the first invalid submission refuses the batch, its index in "
        "the error's details (job_index) or field path. 201: new jobs; 200: the jobs an earlier "
        "batch with the same idempotency key and body made. 429 JOBS.TOO_MANY_UNFINISHED with "
        "Retry-After: the batch would pass a cap on unfinished jobs; nothing is stored.",
        parameters=[IDEMPOTENCY_KEY],
        request=schemas.BulkSubmissionSchema,
        responses={
            201: OpenApiResponse(schemas.BulkSubmittedSchema, "the new jobs"),
            200: OpenApiResponse(schemas.BulkSubmittedSchema, "the jobs of the same key and body"),
        },
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        specs, in_body = parse_bulk_submission(request.data)
        submitted = services.job_submit_many(
            owner=request.user,
            specs=specs,
            idempotency_key=_idempotency_key(request, in_body),
            trace_id=current_trace_id(),
        )
        return Response(
            {"count": len(submitted.ids), "ids": [str(i) for i in submitted.ids]},
            status=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        )


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
    error_codes = {
        "GET": JOB_NOT_FOUND,
        "PATCH": {
            **JOB_NOT_FOUND,
            400: ["API.VALIDATION_ERROR", "JOBS.NAIVE_RUN_AT"],
            409: ["JOBS.NOT_PENDING"],
        },
    }

    @extend_schema(
        operation_id="jobs_get",
        summary="A job with its attempts",
        responses=schemas.JobDetailSchema,
    )
    def get(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(job_detail(request, job))

    @extend_schema(
        operation_id="jobs_reschedule",
        summary="Move a pending job's run_at",
        request=schemas.JobChangeSchema,
        responses=schemas.JobDetailSchema,
    )
    def patch(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        services.job_reschedule(job_id=job.id, run_at=parse_job_change(request.data))
        return Response(job_detail(request, job_get_visible(job_id=job_id, user=request.user)))


class JobCancelApi(APIView):
    """Cancel a job that has not finished; cancelling a cancelled job again is a no-op."""

    required_permissions = {"POST": "jobs.change_job"}
    error_codes = {"POST": {**JOB_NOT_FOUND, 409: ["JOBS.NOT_CANCELLABLE"]}}

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        description="A running attempt stops at its next heartbeat or step boundary. 409 "
        "JOBS.NOT_CANCELLABLE once it succeeded or failed.",
        request=None,
        responses=schemas.JobDetailSchema,
    )
    def post(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        # Conflict if it finished otherwise; audited as the caller's action.
        services.job_cancel(job_id=job.id, actor=request.user)
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response(job_detail(request, job))


class JobExecutionListApi(APIView):
    """GET: a job's attempts, oldest first, each with its step results."""

    required_permissions = {"GET": "jobs.view_job"}
    error_codes = {"GET": JOB_NOT_FOUND}

    @extend_schema(
        operation_id="jobs_executions",
        summary="A job's attempts",
        responses=schemas.ExecutionListSchema,
    )
    def get(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response({"results": execution_output(execution_list_for_job(job_id=job.id))})


class JobCallbackListApi(APIView):
    """GET: a job's completion callback attempts, oldest first."""

    required_permissions = {"GET": "jobs.view_job"}
    error_codes = {"GET": JOB_NOT_FOUND}

    @extend_schema(
        operation_id="jobs_callbacks",
        summary="A job's completion callback attempts",
        responses=schemas.CallbackDeliveryListSchema,
    )
    def get(self, request: AuthenticatedRequest, job_id: UUID) -> Response:
        job = job_get_visible(job_id=job_id, user=request.user)
        return Response({"results": callback_output(callback_list_for_job(job_id=job.id))})


class CallbackKeyApi(APIView):
    """GET: the key the caller's jobs' completion callbacks are signed with (HMAC-SHA256 of the
    raw body, in ``X-Jobplatform-Signature``). Each owner has a key of its own."""

    required_permissions = {"GET": "jobs.add_job"}  # who submits jobs, so receives callbacks
    error_codes = {"GET": {404: ["JOBS.CALLBACKS_DISABLED"]}}

    @extend_schema(
        operation_id="callbacks_key",
        summary="The key that signs your jobs' completion callbacks",
        responses=schemas.CallbackKeySchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        if not settings.JOBPLATFORM_CALLBACK_SECRET:
            raise NotFound(
                "JOBS.CALLBACKS_DISABLED",
                "this platform sends no callbacks: its operator set no JOBPLATFORM_CALLBACK_SECRET",
            )
        return Response(
            {
                "key": callback_key(owner_id=request.user.pk),
                "algorithm": "hmac-sha256",
                "header": "X-Jobplatform-Signature",
            }
        )


class JobStatsApi(APIView):
    """GET: the jobs the caller may see, counted (filters as the list's)."""

    required_permissions = {"GET": "jobs.view_job"}
    filterset_class = JobFilter
    error_codes = {"GET": {400: ["API.VALIDATION_ERROR"]}}

    @extend_schema(
        operation_id="jobs_stats",
        summary="Counts by status and queue, the oldest due job's age, the last hour",
        responses=schemas.JobStatsSchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        jobs = DjangoFilterBackend().filter_queryset(request, job_list(user=request.user), self)
        return Response(job_stats(jobs=jobs))


class StepTypeListApi(APIView):
    """The step types a job may use, with the JSON Schema of their parameters."""

    required_permissions = {"GET": "jobs.view_job"}

    @extend_schema(
        operation_id="steps_list", summary="Step types", responses=schemas.StepTypeListSchema
    )
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

    @extend_schema(
        operation_id="queues_list", summary="The queues", responses=schemas.QueueListSchema
    )
    def get(self, request: Request) -> Response:
        return Response({"results": [queue_output(q, request) for q in queue_list()]})


class QueueDetailApi(APIView):
    """GET: one queue. PATCH {"max_in_flight": n|null} (admins): its in-flight cap."""

    required_permissions = {"GET": "jobs.view_queue", "PATCH": "jobs.change_queue"}
    error_codes = {
        "GET": QUEUE_NOT_FOUND,
        "PATCH": {
            **QUEUE_NOT_FOUND,
            400: ["API.VALIDATION_ERROR", "QUEUES.INVALID_MAX_IN_FLIGHT"],
        },
    }

    @extend_schema(operation_id="queues_get", summary="A queue", responses=schemas.QueueSchema)
    def get(self, request: Request, name: str) -> Response:
        return Response(queue_output(queue_get(name=name), request))

    @extend_schema(
        operation_id="queues_set_max_in_flight",
        summary="Set a queue's in-flight cap",
        description="Admins. A lower cap stops releases until the queue is under it; jobs "
        "already released run. null: back to JOBPLATFORM_QUEUE_MAX_IN_FLIGHT.",
        request=schemas.QueueChangeSchema,
        responses=schemas.QueueSchema,
    )
    def patch(self, request: AuthenticatedRequest, name: str) -> Response:
        queues.queue_set_max_in_flight(
            name=name, max_in_flight=parse_queue_change(request.data), actor=request.user
        )
        return Response(queue_output(queue_get(name=name), request))


class QueuePauseApi(APIView):
    """Stop releasing the queue's jobs (operators); running jobs finish. Idempotent."""

    required_permissions = {"POST": "jobs.pause_queue"}
    error_codes = {"POST": QUEUE_NOT_FOUND}

    @extend_schema(
        operation_id="queues_pause",
        summary="Pause a queue",
        description="Operators. The dispatcher releases none of its jobs until it is resumed; "
        "running jobs finish. Pausing a paused queue is a no-op.",
        request=None,
        responses=schemas.QueueSchema,
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        queues.queue_pause(name=name, actor=request.user)
        return Response(queue_output(queue_get(name=name), request))


class QueueResumeApi(APIView):
    """Release the queue's jobs again (operators). Idempotent."""

    required_permissions = {"POST": "jobs.pause_queue"}
    error_codes = {"POST": QUEUE_NOT_FOUND}

    @extend_schema(
        operation_id="queues_resume",
        summary="Resume a queue",
        description="Operators. Its jobs are released again. Resuming a running queue is a no-op.",
        request=None,
        responses=schemas.QueueSchema,
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        queues.queue_resume(name=name, actor=request.user)
        return Response(queue_output(queue_get(name=name), request))


class LimitsApi(APIView):
    """The caller's admission caps and fair-share weight, and its unfinished jobs."""

    required_permissions = {"GET": None}

    @extend_schema(
        operation_id="limits_get",
        summary="The caller's caps and usage",
        description="Its cap on unfinished jobs and how many it has now, the platform's cap, "
        "its fair-share weight, the bulk size limit and the Retry-After of a 429.",
        responses=schemas.LimitsSchema,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(owner_limits(user=request.user))
