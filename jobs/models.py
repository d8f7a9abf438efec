from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Case, F, Q, When
from django.utils import timezone

from jobplatform.tracing import new_trace_id
from jobs.callbacks.models import CallbackDelivery
from jobs.schedules.models import Schedule, ScheduleFiring

__all__ = [
    "DUE_AT",
    "BulkSubmission",
    "CallbackDelivery",
    "CircuitBreaker",
    "Hold",
    "Job",
    "JobStatus",
    "OwnerQuota",
    "Queue",
    "RateLimit",
    "Schedule",
    "ScheduleFiring",
    "new_trace_id",
]


class JobStatus(models.TextChoices):
    """A job's states; jobs.lifecycle says which transition starts from which."""

    PENDING = "pending"  # stored in PostgreSQL, waiting for run_at; the dispatcher releases it
    QUEUED = "queued"  # released: a run_job message for the next attempt is on the broker
    RUNNING = "running"  # claimed by a worker; exactly one Execution of it is running
    RETRYING = "retrying"  # an attempt failed transiently; the next is due at next_attempt_at
    SUCCEEDED = "succeeded"  # every step succeeded; terminal
    FAILED = "failed"  # permanent error or retries exhausted; terminal, dead-lettered
    CANCELLED = "cancelled"  # cancelled before it finished; terminal


class Hold(models.TextChoices):
    """Why the dispatcher parked a waiting job (``Job.hold``): it leaves the release's lanes until
    the reason passes. A job waiting for anything else (its run_at, a paused queue, room in its
    queue) is not parked: the release skips it without writing to it (docs/architecture.md)."""

    NONE = "", "not parked"
    CONCURRENCY_KEY = "concurrency_key", "its concurrency key is at max_concurrency"
    # ``Job.held_by`` names the breaker's host or the limit.
    CIRCUIT_BREAKER = "circuit_breaker", "the circuit breaker of one of its hosts is open"
    RATE_LIMIT = "rate_limit", "one of its rate limits has no token left"


# When a waiting job is due: its run_at while PENDING, its next attempt's time while RETRYING.
# The release's index (job_ready) is built on this expression, and its queries use it as written.
DUE_AT = Case(When(status="retrying", then=F("next_attempt_at")), default=F("run_at"))
_WAITING = ["pending", "retrying"]  # the states the dispatcher releases from (jobs.lifecycle)
_IN_FLIGHT = ["queued", "running"]  # released and not finished: what the caps count
_HELD = ["circuit_breaker", "rate_limit"]  # holds with a name in Job.held_by


class Job(models.Model):
    """One unit of work: a pipeline of steps with an input, a queue and a retry policy."""

    Status = JobStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: job_owner_created (owner, -created_at) begins with it and serves every
    # lookup by owner (the PROTECT check when a user is deleted included); a second one only cost
    # every job insert an index entry.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs", db_index=False
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
    # Flow control (docs/architecture.md#flow-control). An owner's jobs with one key run at most
    # max_concurrency at a time across every worker (a key is the owner's: another owner's same
    # key is another key); NULL, not "": keyless jobs stay out of the key indexes below, so they
    # pay nothing for them.
    concurrency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    max_concurrency = models.PositiveIntegerField(default=1)
    hold = models.CharField(max_length=32, choices=Hold.choices, default=Hold.NONE, blank=True)
    # Rate limits and circuit breakers (docs/flow-control.md). ``rate_limit`` names a RateLimit
    # the job counts against; ``hosts`` are the hosts (host or host:port) of its http steps,
    # read from their URLs at submission: each is a circuit breaker's name and may be a
    # RateLimit's. ``held_by`` is the host or limit a parked job waits for.
    rate_limit = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    hosts = ArrayField(models.CharField(max_length=300), default=list, blank=True)
    held_by = models.CharField(max_length=300, default="", blank=True)
    # Called once the job ends (docs/api.md#completion-callbacks); empty: none.
    # db_default: rows inserted by code that predates the column (a rolling deploy) get it too.
    callback_url = models.CharField(max_length=2048, default="", db_default="", blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The release's lanes: one (queue, owner, priority, status, hold) lane after another,
            # each in due order. The release walks the lanes (a skip scan: one probe per lane,
            # however many jobs a lane holds) and takes the head of each due one. Only waiting
            # rows are indexed, so it stays small however many finished jobs the table holds.
            models.Index(
                "queue",
                "owner",
                "priority",
                "status",
                "hold",
                DUE_AT,
                condition=Q(status__in=_WAITING),
                name="job_ready",
            ),
            # Jobs in flight, which the release counts per queue and owner (the caps, fair
            # share), and among which the dispatcher looks for lost messages: as many entries as
            # jobs are QUEUED or RUNNING.
            models.Index(
                fields=["queue", "owner"], condition=Q(status__in=_IN_FLIGHT), name="job_in_flight"
            ),
            # Concurrency keys, an owner's each: the waiting jobs of a key (parked ones first by
            # key, for the release's walk over parked keys), and the released ones it counts
            # against max_concurrency. Keyless jobs are in neither.
            models.Index(
                "hold",
                "owner",
                "concurrency_key",
                F("priority").desc(),
                DUE_AT,
                condition=Q(status__in=_WAITING, concurrency_key__isnull=False),
                name="job_key_waiting",
            ),
            models.Index(
                fields=["owner", "concurrency_key"],
                condition=Q(status__in=_IN_FLIGHT, concurrency_key__isnull=False),
                name="job_key_in_flight",
            ),
            # Jobs parked by a breaker or a rate limit, by what holds them: the release's walk
            # over the hosts and limits with parked jobs, and their jobs in the order they come
            # back. Only parked rows are indexed.
            models.Index(
                "hold",
                "held_by",
                F("priority").desc(),
                DUE_AT,
                condition=Q(status__in=_WAITING, hold__in=_HELD),
                name="job_held",
            ),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            # GET /jobs/?name=: without it the filter walked job_created (60 ms at 1M jobs).
            models.Index(fields=["name", "-created_at"], name="job_name_created"),
            # GET /jobs/?trace_id= and the admin's search: from a log line's trace id to the job
            # (one or a few among all) without a scan.
            models.Index(fields=["trace_id"], name="job_trace_id"),
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
            models.CheckConstraint(
                condition=Q(max_concurrency__gte=1), name="job_max_concurrency_positive"
            ),
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


class Queue(models.Model):
    """A queue's state that operators change at run time: paused, and its in-flight cap.

    A queue of JOBPLATFORM_QUEUES without a row is running with the defaults; pausing it or
    setting its cap creates the row (jobs.services.queues).
    """

    name = models.CharField(max_length=64, primary_key=True)
    paused = models.BooleanField(
        default=False, help_text="the dispatcher releases none of its jobs; running ones finish"
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="most jobs QUEUED + RUNNING at once; empty: JOBPLATFORM_QUEUE_MAX_IN_FLIGHT",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Pausing is an operator's act (an incident, a deploy); the cap (change_queue) an admin's.
        permissions = [("pause_queue", "Can pause and resume a queue")]

    def __str__(self) -> str:
        return self.name


class OwnerQuota(models.Model):
    """One client's share of the platform: its fair-share weight and its cap on unfinished jobs.

    An owner without a row has weight 1 and the default cap (JOBPLATFORM_MAX_UNFINISHED_PER_OWNER).
    """

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="quota"
    )
    weight = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="share of each queue's room when several owners wait (1 to 100)",
    )
    max_unfinished = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="most unfinished jobs; empty: JOBPLATFORM_MAX_UNFINISHED_PER_OWNER",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(weight__gte=1, weight__lte=100), name="ownerquota_weight_range"
            ),
        ]

    def __str__(self) -> str:
        return f"quota of {self.owner_id}"


class RateLimit(models.Model):
    """A named token bucket: ``rate`` tokens a second, at most ``burst`` saved up. A job counts
    against the limit it names (``Job.rate_limit``) and the limits named after the hosts of its
    http steps; the dispatcher releases it only with a token of each (jobs.ratelimit)."""

    name = models.CharField(
        max_length=300, primary_key=True, help_text="a name jobs give, or an http host[:port]"
    )
    rate = models.FloatField(
        validators=[MinValueValidator(0.001)], help_text="tokens added per second"
    )
    burst = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="most tokens saved up: the largest burst"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(rate__gt=0, burst__gte=1), name="ratelimit_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}: {self.rate:g}/s, burst {self.burst}"


class CircuitBreaker(models.Model):
    """The circuit breaker of one http host (jobs.breakers). A host without a row is closed.

    closed: jobs run; transient failures are counted in a window. open: the host's jobs are
    held PENDING until ``retry_at`` (never, when an operator opened it). half_open: one job,
    the probe, is released; its success closes the breaker, its failure opens it again.
    """

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    host = models.CharField(max_length=300, primary_key=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    failures = models.PositiveIntegerField(default=0, help_text="transient failures in the window")
    window_started_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="when a probe may go; empty while opened by hand"
    )
    manual = models.BooleanField(default=False, help_text="opened by an operator: stays open")
    probe_job = models.UUIDField(null=True, blank=True)
    probe_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Opening and closing one by hand is an operator's act (an incident); seeing them anyone's.
        permissions = [("operate_circuitbreaker", "Can open and close a circuit breaker")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["closed", "open", "half_open"]),
                name="circuitbreaker_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host} ({self.state})"


class BulkSubmission(models.Model):
    """A bulk submission made with an idempotency key: the jobs it made, so that a repeat of the
    same body answers them instead of making them again (jobs.services.job_submit_many). Its
    jobs carry no key of their own. Rows older than JOBPLATFORM_IDEMPOTENCY_TTL_HOURS are
    deleted by the owner's next keyed bulk submission."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    job_ids = models.JSONField(help_text="the jobs' ids, in the order submitted")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Two concurrent submissions with one key: the database lets exactly one in.
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"], name="one_bulk_per_idempotency_key"
            )
        ]
        indexes = [models.Index(fields=["owner", "created_at"], name="bulk_owner_created")]

    def __str__(self) -> str:
        return f"bulk {self.idempotency_key} of {self.owner_id}"
