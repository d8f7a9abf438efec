from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from executions.models import Execution


def execution_list_for_job(*, job_id: UUID) -> QuerySet[Execution]:
    """Every attempt of the job, oldest first, with its step results (two queries in all)."""
    return (
        Execution.objects.filter(job_id=job_id).order_by("attempt").prefetch_related("step_results")
    )
