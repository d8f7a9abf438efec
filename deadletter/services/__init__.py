"""Writes on dead letters, by sub-domain: record and notify, operator actions, retention."""

from __future__ import annotations

from deadletter.services.actions import (
    BULK_BATCH,
    DISMISSABLE,
    RETRYABLE,
    BulkOutcome,
    RetryOverrides,
    dead_letter_dismiss,
    dead_letter_dismiss_bulk,
    dead_letter_retry,
    dead_letter_retry_bulk,
    job_retry_with_dead_letter,
)
from deadletter.services.record import NOTIFY_TASK, dead_letter_notify, dead_letter_record
from deadletter.services.retention import (
    PURGE_TASK,
    PURGEABLE,
    dead_letter_purge,
    dead_letter_schedule_purge,
)

__all__ = [
    "BULK_BATCH",
    "DISMISSABLE",
    "NOTIFY_TASK",
    "PURGEABLE",
    "PURGE_TASK",
    "RETRYABLE",
    "BulkOutcome",
    "RetryOverrides",
    "dead_letter_dismiss",
    "dead_letter_dismiss_bulk",
    "dead_letter_notify",
    "dead_letter_purge",
    "dead_letter_record",
    "dead_letter_retry",
    "dead_letter_retry_bulk",
    "dead_letter_schedule_purge",
    "job_retry_with_dead_letter",
]
