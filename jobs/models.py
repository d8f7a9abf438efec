from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


def new_trace_id() -> str:
    return uuid.uuid4().hex


class Job(models.Model):
    """One unit of work: a pipeline of steps with an input, a queue and a retry policy."""

    class Status(models.TextChoices):
        PENDING = "pending"  # stored in PostgreSQL, waiting for run_at; the dispatcher releases it
        QUEUED = "queued"  # released: a run_job message for the next attempt is on the broker
        RUNNING = "running"  # claimed by a worker; exactly one Execution of it is running
        RETRYING = "retrying"  # an attempt failed transiently; the next is due at next_attempt_at
        SUCCEEDED = "succeeded"  # every step succeeded; terminal
        FAILED = "failed"  # permanent error or retries exhausted; terminal, dead-lettered
        CANCELLED = "cancelled"  # cancelled before it finished; terminal

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
            # One job per schedule tick: two beats, or a redelivered fire message, that fire one
            # tick insert one row (INSERT ... ON CONFLICT DO NOTHING in schedule_fire).
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=Q(schedule__isnull=False),
                name="one_job_per_schedule_tick",
            ),
            models.CheckConstraint(condition=Q(priority__lte=9), name="job_priority_range"),
            models.CheckConstraint(condition=Q(retry_backoff__gte=0), name="job_backoff_positive"),
            models.CheckConstraint(
                condition=Q(retry_backoff_max__gte=0), name="job_backoff_max_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


# Schedule has a field named timezone, which hides the module inside its class body.
_now = timezone.now


class Schedule(models.Model):
    """A cron expression in a timezone and a job template: each tick it fires creates one Job.

    ``next_fire_at`` is ours, not beat's: beat wakes the schedule up (every minute, through the
    PeriodicTask it owns) and ``jobs.services.schedule_fire`` fires the ticks that are due by it.
    """

    class Overlap(models.TextChoices):
        ALLOW = "allow"  # a new job whatever is still running
        SKIP = "skip"  # no new job while an earlier one is unfinished; the skip is recorded
        BUFFER_ONE = "buffer_one"  # one tick waits for the unfinished job, further ones skip
        CANCEL_PREVIOUS = "cancel_previous"  # the unfinished jobs are cancelled, a new one made

    class Misfire(models.TextChoices):
        SKIP = "skip"  # ticks missed while nothing fired are dropped; only later ticks fire
        RUN_ONCE = "run_once"  # one job stands for all the missed ticks
        RUN_ALL = "run_all"  # each missed tick within misfire_window, at most misfire_cap

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the (owner, name) constraint and the (owner, created) index below.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="schedules", db_index=False
    )
    name = models.CharField(max_length=200)
    cron = models.CharField(max_length=120, help_text="five fields, in the schedule's timezone")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name")
    job_template = models.JSONField(help_text="the fields of a job submission, without run_at")
    overlap = models.CharField(max_length=16, choices=Overlap.choices, default=Overlap.ALLOW)
    misfire = models.CharField(max_length=16, choices=Misfire.choices, default=Misfire.RUN_ONCE)
    misfire_window = models.PositiveIntegerField(
        default=3600, help_text="run_all: seconds back that missed ticks are still run"
    )
    misfire_cap = models.PositiveIntegerField(
        default=10, help_text="run_all: most missed ticks run in one catch-up"
    )
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True, help_text="false: paused")
    jitter = models.PositiveIntegerField(
        default=0, help_text="up to this many seconds of random delay added to each job"
    )
    pause_note = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)

    # The next tick to fire, UTC. NULL while paused, or when no tick is left before end_at.
    next_fire_at = models.DateTimeField(null=True, blank=True)
    # buffer_one: the tick waiting for the unfinished job to end before its own job is made.
    buffered_for = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    # Beat's row, which wakes this schedule up; created, changed and deleted with it.
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.PROTECT,
        related_name="jobplatform_schedule",
    )
    # Every write bumps it: schedule_fire claims the ticks it read with WHERE version = <read>.
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=_now, editable=False)
    updated_at = models.DateTimeField(default=_now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="schedule_owner_created"),
            models.Index(fields=["-created_at"], name="schedule_created"),
        ]
        constraints = [
            # A retried POST must not make a second schedule that fires every tick twice.
            models.UniqueConstraint(fields=["owner", "name"], name="one_schedule_name_per_owner"),
            models.CheckConstraint(
                condition=Q(start_at__isnull=True)
                | Q(end_at__isnull=True)
                | Q(end_at__gt=F("start_at")),
                name="schedule_ends_after_start",
            ),
            models.CheckConstraint(condition=Q(misfire_cap__gte=1), name="schedule_misfire_cap"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class ScheduleFiring(models.Model):
    """What one firing of a schedule decided for one tick: a job made, or why not.

    Jobs record their tick in ``Job.scheduled_for``; these rows also keep the ticks that made no
    job (skipped, buffered), and when the firing happened. Only the latest ones are kept.
    """

    class Outcome(models.TextChoices):
        CREATED = "created"  # a job was made for the tick
        BUFFERED = "buffered"  # buffer_one: the tick waits for the unfinished job to end
        SKIPPED_OVERLAP = "skipped_overlap"  # skip or a full buffer: an earlier job is unfinished
        SKIPPED_MISFIRE = "skipped_misfire"  # missed while nothing fired; the policy dropped it
        DUPLICATE = "duplicate"  # the tick already had its job (unique schedule, scheduled_for)

    schedule = models.ForeignKey(  # indexed by firing_schedule_recent
        Schedule, on_delete=models.CASCADE, related_name="firings", db_index=False
    )
    scheduled_for = models.DateTimeField(help_text="the tick (UTC), or the trigger instant")
    fired_at = models.DateTimeField(help_text="when the firing happened")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    manual = models.BooleanField(default=False, help_text="triggered through the API or admin")
    # run_once: how many earlier missed ticks this job also stands for; skipped_misfire: how many
    # ticks the row stands for (counted up to a limit).
    missed = models.PositiveIntegerField(default=0)
    cancelled = models.JSONField(default=list, blank=True, help_text="ids cancel_previous ended")

    class Meta:
        ordering = ["-id"]
        # A schedule's latest firings (ids grow with each firing): shown, and the rest pruned.
        indexes = [models.Index(fields=["schedule", "-id"], name="firing_schedule_recent")]

    def __str__(self) -> str:
        return f"{self.schedule_id} {self.scheduled_for:%Y-%m-%d %H:%M} {self.outcome}"
