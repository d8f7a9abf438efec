"""Schedules and what each firing decided (DESIGN §6, docs/schedules.md). Registered with the
``jobs`` app through ``jobs.models``, which imports them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

# Schedule has a field named timezone, which hides the module inside its class body.
_now = timezone.now


class Schedule(models.Model):
    """A cron expression in a timezone and a job template: each tick it fires creates one Job.

    ``next_fire_at`` says when it fires next: the dispatchers' sweep
    (``jobs.schedules.firing.schedules_fire_due``) fires every schedule whose time has come.
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
    # The hosts of the template's http steps, as a job stores them (Job.hosts): each tick's job
    # copies them in SQL, where the URLs cannot be parsed as httpx parses them.
    job_hosts = ArrayField(models.CharField(max_length=300), default=list, blank=True)
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
    # Every write (an edit, a firing, a trigger) bumps it.
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=_now, editable=False)
    updated_at = models.DateTimeField(default=_now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="schedule_owner_created"),
            models.Index(fields=["-created_at"], name="schedule_created"),
            # The sweep's claim, oldest tick first, and the dispatcher's wait for the next tick:
            # only schedules that will fire are indexed.
            models.Index(
                fields=["next_fire_at"],
                condition=Q(enabled=True, next_fire_at__isnull=False),
                name="schedule_due",
            ),
            # buffer_one ticks waiting for a job to end: few, looked at by every sweep.
            models.Index(
                fields=["buffered_for"],
                condition=Q(enabled=True, buffered_for__isnull=False),
                name="schedule_buffered",
            ),
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
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
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
