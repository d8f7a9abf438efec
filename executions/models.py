from __future__ import annotations

from django.db import models
from django.db.models import Q

from jobs.models import Job


class ExecutionStatus(models.TextChoices):
    """An attempt's states."""

    RUNNING = "running"  # a worker is running this attempt's steps
    SUCCEEDED = "succeeded"  # every remaining step succeeded; the job succeeded
    FAILED = "failed"  # a step failed; the job retries or is FAILED, per `will_retry`
    CANCELLED = "cancelled"  # the job was cancelled; the attempt stopped early
    LOST = "lost"  # its heartbeat stopped (worker killed): the reaper ended it


class Execution(models.Model):
    """One attempt of a job: who ran it, when, which steps, how it ended."""

    Status = ExecutionStatus

    # No index of its own: one_execution_per_attempt (job, attempt) serves every lookup by job,
    # and each index is paid for on every attempt's INSERT (the hot path).
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="executions", db_index=False
    )
    attempt = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    worker = models.CharField(max_length=255, blank=True)
    delivery_id = models.CharField(max_length=255, blank=True, help_text="Celery task id")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    will_retry = models.BooleanField(default=False)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt"], name="one_execution_per_attempt"),
            models.CheckConstraint(
                condition=Q(status__in=ExecutionStatus.values), name="execution_status_valid"
            ),
            # The database, not the code, guarantees a job never runs twice at once.
            models.UniqueConstraint(
                fields=["job"], condition=Q(status="running"), name="one_running_execution_per_job"
            ),
        ]
        indexes = [
            # From Flower's task id to the attempt (GET /api/v1/jobs/?delivery_id=, the admin's
            # search). Paid for on every attempt's INSERT: measured in docs/performance.md.
            models.Index(fields=["delivery_id"], name="execution_delivery_id"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.attempt}"


class StepResultStatus(models.TextChoices):
    """How one step of an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepResult(models.Model):
    """What one step of one attempt did."""

    Status = StepResultStatus

    # Indexed by one_result_per_step (execution, index), as above.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="step_results", db_index=False
    )
    index = models.PositiveIntegerField()
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()

    class Meta:
        ordering = ["execution", "index"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="one_result_per_step"),
            models.CheckConstraint(
                condition=Q(status__in=StepResultStatus.values), name="stepresult_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution} step {self.index}"
