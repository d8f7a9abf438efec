from __future__ import annotations

from uuid import UUID

from jobs.callbacks.models import CallbackDelivery


def callback_list_for_job(*, job_id: UUID) -> list[CallbackDelivery]:
    """The job's callback attempts, oldest first."""
    return list(CallbackDelivery.objects.filter(job_id=job_id).order_by("id"))
