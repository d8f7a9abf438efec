"""Completion callbacks' deliveries, one row per HTTP attempt. Registered with the ``jobs`` app
through ``jobs.models``, which imports them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class CallbackDelivery(models.Model):
    """One attempt to deliver one completion notification.

    A notification (``delivery_id``, the ``X-Jobplatform-Delivery`` header) is made for each time a
    job ends and each target; its attempts share the id and count up from 1.
    """

    class Event(models.TextChoices):
        SUCCEEDED = "job.succeeded"
        FAILED = "job.failed"
        CANCELLED = "job.cancelled"

    class Target(models.TextChoices):
        JOB = "job", "the job's callback_url"
        OPERATOR = "operator", "the operator's completion webhook"

    class State(models.TextChoices):
        PENDING = "pending"  # the POST is under way (or its worker died: redelivered later)
        DELIVERED = "delivered"  # the receiver answered 2xx
        RETRYING = "retrying"  # this attempt failed; another follows with backoff
        FAILED = "failed"  # this attempt failed, and no other follows

    job = models.ForeignKey("Job", on_delete=models.CASCADE, related_name="callback_deliveries")
    delivery_id = models.UUIDField()
    target = models.CharField(max_length=16, choices=Target.choices)
    url = models.CharField(max_length=2048)
    event = models.CharField(max_length=32, choices=Event.choices)
    attempt = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Two copies of one message racing: one of them records (and sends) the attempt.
            models.UniqueConstraint(
                fields=["delivery_id", "attempt"], name="one_row_per_callback_attempt"
            )
        ]
        indexes = [models.Index(fields=["job", "id"], name="callback_job")]

    def __str__(self) -> str:
        return f"{self.event} of {self.job_id} to {self.target}, attempt {self.attempt}"
