from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from jobs.schedules.models import Schedule, ScheduleFiring

__all__ = ["Job", "JobStatus", "Schedule", "ScheduleFiring", "new_trace_id"]


def new_trace_id() -> str:
    return uuid.uuid4().hex


class JobStatus(models.TextChoices):
    """A job's states; jobs.lifecycle says which transition starts from which."""

    PENDING = "pending"  # stored in PostgreSQL, waiting for run_at; the dispatcher releases it
    QUEUED = "queued"  # released: a run_job message for the next attempt is on the broker
    RUNNING = "running"  # claimed by a worker; exactly one Execution of it is running
    RETRYING = "retrying"  # an attempt failed transiently; the next is due at next_attempt_at
    SUCCEEDED = "succeeded"  # every step succeeded; terminal
    FAILED = "failed"  # permanent error or retries exhausted; terminal, dead-lettered
    CANCELLED = "cancelled"  # cancelled before it finished; terminal


class Job(models.Model):
    """One unit of work: a pipeline of steps with an input, a queue and a retry policy."""

    Status = JobStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs"
    )
    name = models.CharField(max_length=200)
    steps = models.JSONField(help_text="[{type, params}], validated against the step registry")
    input = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=64, default="default")
    priority = models.PositiveSmallIntegerField(default=5, help_text="0 (lowest) to 9 (highest)")
    max_retries = models.PositiveIntegerField(default=3)
    retry_backoff = models.FloatField(default=2.0, help_text="seconds before the first retry")
    retry_backoff_max = models.FloatField(default=300.0)
    retry_jitter = models.BooleanField(default=True)
    timeout = models.PositiveIntegerField(default=3600, help_text="seconds per attempt")
    run_at = models.DateTimeField(default=timezone.now)
    trace_id = models.CharField(max_length=32, default=new_trace_id)
    # A client's key for safe resubmission: the same key and body return the same job.
    # NULL, not "": jobs without a key stay out of the unique constraint below.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="attempts started so far")
    next_step = models.PositiveIntegerField(default=0, help_text="where the next attempt resumes")
    step_outputs = models.JSONField(default=list, blank=True, help_text="outputs of done steps")
    result = models.JSONField(null=True, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A manual retry (from the dead-letter) gives the job a fresh attempt budget while its attempt
    # numbering continues: the retry policy counts attempts from here.
    retry_base = models.PositiveIntegerField(
        default=0, help_text="attempts made before the current retry budget"
    )
    # A job created by a schedule: the tick it is for (UTC), or the instant of a manual trigger.
    # Indexed only through the partial indexes and constraint below, which leave out the jobs
    # that no schedule made, so those pay nothing for them.
    schedule = models.ForeignKey(
        "Schedule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        db_index=False,
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The dispatcher's due scan: only PENDING rows are indexed, so the scan stays small and
            # index-driven however many finished jobs the table holds.
            models.Index(
                fields=["run_at"], condition=Q(status="pending"), name="job_pending_run_at"
            ),
            # The dispatcher's scans for jobs whose message was lost, as small as the one above.
            models.Index(fields=["queued_at"], condition=Q(status="queued"), name="job_queued_at"),
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="retrying"), name="job_retrying_due"
            ),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            # GET /jobs/?name=: without it the filter walked job_created (60 ms at 1M jobs).
            models.Index(fields=["name", "-created_at"], name="job_name_created"),
            # GET /jobs/?schedule= and a schedule's recent jobs.
            models.Index(
                fields=["schedule", "-created_at"],
                condition=Q(schedule__isnull=False),
                name="job_schedule_created",
            ),
            # The overlap check at firing time: a schedule's unfinished jobs, found without
            # walking its whole history.
            models.Index(
                fields=["schedule"],
                condition=Q(
                    schedule__isnull=False,
                    status__in=["pending", "queued", "running", "retrying"],
                ),
                name="job_schedule_active",
            ),
        ]
        constraints = [
            # Two concurrent submissions with one key: the database lets exactly one in.
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="one_job_per_idempotency_key",
            ),
            # One job per schedule tick, whatever fires it (INSERT ... ON CONFLICT DO NOTHING in
            # jobs.services.job_insert_ticks).
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=Q(schedule__isnull=False),
                name="one_job_per_schedule_tick",
            ),
            models.CheckConstraint(condition=Q(priority__lte=9), name="job_priority_range"),
            # No write, raw SQL included, can store a state the lifecycle does not know.
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(condition=Q(retry_backoff__gte=0), name="job_backoff_positive"),
            models.CheckConstraint(
                condition=Q(retry_backoff_max__gte=0), name="job_backoff_max_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"
