"""Writes on jobs. Each transition is one conditional UPDATE; the row count is the answer."""

from __future__ import annotations

from jobs.services.common import DISPATCH_CHANNEL, RUN_JOB_TASK, notify_dispatchers
from jobs.services.firing import (
    Fired,
    FireResult,
    MisfirePlan,
    misfire_plan,
    schedule_fire,
    schedule_trigger,
)
from jobs.services.release import (
    ReleasedJob,
    job_next_due_at,
    job_release_due,
    job_release_lost,
    job_unrelease,
)
from jobs.services.schedules import (
    FIRE_SCHEDULE_TASK,
    ScheduleSpec,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_spec,
    schedule_update,
    schedule_validate,
)
from jobs.services.submission import JobSpec, Submission, job_submit, job_submit_many, job_validate
from jobs.services.transitions import job_cancel, job_reschedule, job_retry

__all__ = [
    "DISPATCH_CHANNEL",
    "FIRE_SCHEDULE_TASK",
    "RUN_JOB_TASK",
    "FireResult",
    "Fired",
    "JobSpec",
    "MisfirePlan",
    "ReleasedJob",
    "ScheduleSpec",
    "Submission",
    "job_cancel",
    "job_next_due_at",
    "job_release_due",
    "job_release_lost",
    "job_reschedule",
    "job_retry",
    "job_submit",
    "job_submit_many",
    "job_unrelease",
    "job_validate",
    "misfire_plan",
    "notify_dispatchers",
    "schedule_create",
    "schedule_delete",
    "schedule_fire",
    "schedule_pause",
    "schedule_resume",
    "schedule_spec",
    "schedule_trigger",
    "schedule_update",
    "schedule_validate",
]
