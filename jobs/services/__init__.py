"""Writes on jobs. Each transition is one conditional UPDATE; the row count is the answer."""

from __future__ import annotations

from jobs.services.common import DISPATCH_CHANNEL, RUN_JOB_TASK, notify_dispatchers
from jobs.services.release import (
    ReleasedJob,
    job_next_due_at,
    job_release_due,
    job_release_lost,
    job_unrelease,
)
from jobs.services.submission import JobSpec, Submission, job_submit, job_submit_many, job_validate
from jobs.services.transitions import job_cancel, job_retry

__all__ = [
    "DISPATCH_CHANNEL",
    "RUN_JOB_TASK",
    "JobSpec",
    "ReleasedJob",
    "Submission",
    "job_cancel",
    "job_next_due_at",
    "job_release_due",
    "job_release_lost",
    "job_retry",
    "job_submit",
    "job_submit_many",
    "job_unrelease",
    "job_validate",
    "notify_dispatchers",
]
