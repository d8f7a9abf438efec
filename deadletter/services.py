"""Writes on dead letters. Called inside the transaction that moves a job to FAILED."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from deadletter.models import DeadLetter


def dead_letter_record(*, job_id: UUID, reason: str, error: dict[str, Any], attempts: int) -> None:
    """Keep a FAILED job with its final error. The caller holds the transaction of the failure."""
    DeadLetter.objects.create(job_id=job_id, reason=reason, error=error, attempts=attempts)
