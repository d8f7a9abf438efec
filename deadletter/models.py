from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job


class DeadLetterState(models.TextChoices):
    """A dead letter's states: open until an operator acts."""

    OPEN = "open"  # waiting for an operator; the job is FAILED
    RETRIED = "retried"  # the job went back to the queue (a later failure is a new entry)
    DISMISSED = "dismissed"  # an operator decided to leave the job FAILED


class DeadLetter(models.Model):
    """A job that ended FAILED, kept with why, and what an operator did about it.

    Written in the transaction of the job's FAILED transition. The snapshot fields keep the job
    as it was when it died: a retry may edit the job's input or policy afterwards.
    """

    class Reason(models.TextChoices):
        EXHAUSTED = "exhausted"  # transient failures used up every retry
        PERMANENT = "permanent"  # a step raised a permanent error: retrying cannot help
        TIMEOUT = "timeout"  # the last attempt ran past the job's timeout
        LOST = "lost"  # the last attempt's worker vanished (heartbeat stopped), no retry left

    State = DeadLetterState

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dead_letters")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    error = models.JSONField(
        help_text="{type, code, message, traceback, permanent, step_index, step_type}"
    )
    # Copied out of `error` so that lists filter, search and group on indexed columns.
    error_type = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    step_type = models.CharField(max_length=100, blank=True)
    step_index = models.PositiveIntegerField(null=True, blank=True)
    message_pattern = models.TextField(blank=True, help_text="the message, numbers and ids masked")
    fingerprint = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(help_text="attempts the job had made when it died")
    worker = models.CharField(max_length=255, blank=True, help_text="worker of the last attempt")
    # The job at the time of death.
    steps = models.JSONField(default=list)
    input = models.JSONField(null=True, blank=True)
    retry_policy = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    note = models.TextField(blank=True, help_text="why it was retried or dismissed")
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="when the webhook receiver accepted it"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "-created_at"], name="deadletter_state_created"),
            models.Index(fields=["-created_at"], name="deadletter_created"),
            models.Index(fields=["fingerprint", "state"], name="deadletter_fingerprint"),
            # The purge's scan: only closed entries are indexed; open ones are never purged.
            models.Index(
                fields=["resolved_at"], condition=~Q(state="open"), name="deadletter_purgeable"
            ),
        ]
        constraints = [
            # A FAILED job has one entry waiting for an operator, however often it died before.
            models.UniqueConstraint(
                fields=["job"], condition=Q(state="open"), name="one_open_dead_letter_per_job"
            ),
            models.CheckConstraint(
                condition=Q(state="open", resolved_at__isnull=True)
                | (~Q(state="open") & Q(resolved_at__isnull=False)),
                name="deadletter_resolved_iff_closed",
            ),
            models.CheckConstraint(
                condition=Q(state__in=DeadLetterState.values), name="deadletter_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.id}: job {self.job_id} ({self.reason}, {self.state})"


class DeadLetterAction(models.Model):
    """The audit trail: one row per operator action on a dead letter, never changed."""

    class Kind(models.TextChoices):
        RETRY = "retry"  # the job went back to the queue
        DISMISS = "dismiss"  # the entry was closed without a retry
        EDIT = "edit"  # the retry changed the job: max_retries, input or the step it resumes at

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Kept as text too, so the trail still says who after the account is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    note = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} of dead letter {self.dead_letter_id} by {self.actor_name}"
