from __future__ import annotations

from django.db import models
from django.utils import timezone

from jobs.models import Job


class DeadLetter(models.Model):
    """A job that ended FAILED, kept with why. Retry and dismissal come with issue #4."""

    class Reason(models.TextChoices):
        EXHAUSTED = "exhausted"  # transient failures used up every retry
        PERMANENT = "permanent"  # a step raised a permanent error: retrying cannot help

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dead_letters")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    error = models.JSONField(help_text="{type, code, message, traceback, step_index, step_type}")
    attempts = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.job_id} ({self.reason})"
