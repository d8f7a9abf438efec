"""Writes on jobs. Each transition is one conditional UPDATE; the row count is the answer.

Schedules have their own services in ``jobs.schedules``.
"""

from __future__ import annotations

from jobs.services.common import (
    DISPATCH_CHANNEL,
    RUN_JOB_TASK,
    RUN_JOBS_TASK,
    notify_dispatchers,
)
from jobs.services.release import (
    Release,
    ReleasedJob,
    job_release_after_broker_loss,
    job_release_due,
    job_release_lost,
    job_unrelease,
)
from jobs.services.rows import (
    job_insert,
    job_insert_ticks,
    job_steps,
    job_values,
)
from jobs.services.spec import JobSpec, job_validate
from jobs.services.submission import BulkSubmitted, Submission, job_submit, job_submit_many
from jobs.services.transitions import (
    job_audit_subject,
    job_cancel,
    job_reschedule,
    job_retry,
    jobs_cancel,
)

__all__ = [
    "DISPATCH_CHANNEL",
    "RUN_JOBS_TASK",
    "RUN_JOB_TASK",
    "BulkSubmitted",
    "JobSpec",
    "Release",
    "ReleasedJob",
    "Submission",
    "job_audit_subject",
    "job_cancel",
    "job_insert",
    "job_insert_ticks",
    "job_release_after_broker_loss",
    "job_release_due",
    "job_release_lost",
    "job_reschedule",
    "job_retry",
    "job_steps",
    "job_submit",
    "job_submit_many",
    "job_unrelease",
    "job_validate",
    "job_values",
    "jobs_cancel",
    "notify_dispatchers",
]
