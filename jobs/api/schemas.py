"""The shapes of the jobs API, for the OpenAPI document only (jobplatform/api/schema.py).

Requests are parsed, and responses rendered, by plain code (``jobs.api.serializers``): a bulk
request parses a thousand submissions and a list renders five hundred jobs, and DRF serializers
cost more than the rest of the request. These serializers describe what that code accepts and
answers; they are never instantiated with data. ``tests/openapi.py`` validates every response of
the test suite against them, so a field added to the code and not here fails the suite.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.models import CallbackDelivery, JobStatus

# The codes of a submission's values (jobs.services.job_validate), one job or many.
SUBMISSION_ERRORS = (
    "API.VALIDATION_ERROR",
    "JOBS.NO_STEPS",
    "JOBS.TOO_MANY_STEPS",
    "JOBS.INVALID_STEP",
    "JOBS.UNKNOWN_STEP_TYPE",
    "JOBS.INVALID_STEP_PARAMS",
    "JOBS.INPUT_TOO_LARGE",
    "JOBS.UNKNOWN_QUEUE",
    "JOBS.INVALID_PRIORITY",
    "JOBS.INVALID_RETRY_POLICY",
    "JOBS.INVALID_TIMEOUT",
    "JOBS.NAIVE_RUN_AT",
    "JOBS.INVALID_CONCURRENCY_KEY",
    "JOBS.INVALID_MAX_CONCURRENCY",
    "JOBS.INVALID_RATE_LIMIT",
    "JOBS.INVALID_CALLBACK_URL",
    "JOBS.CALLBACK_URL_REFUSED",
    "JOBS.CALLBACKS_DISABLED",
)
# Admission control (jobs.services.admission): a submission past the owner's or the platform's
# cap on unfinished jobs, refused whole, with Retry-After.
ADMISSION_ERRORS = {429: ["JOBS.TOO_MANY_UNFINISHED"]}
# Each is a schema: the generic parameter is what it would serialise, and it serialises nothing.
Schema = serializers.Serializer[Any]


class StepSpecSchema(Schema):
    """One step of a pipeline. ``params`` is checked against the step type's JSON Schema
    (GET /api/v1/steps/); parameters the schema marks ``writeOnly`` show as ``[redacted]``."""

    type = serializers.CharField(help_text="a step type of GET /api/v1/steps/")
    params = serializers.DictField(child=serializers.JSONField(), required=False)
    timeout = serializers.FloatField(
        required=False, help_text="seconds; the step's own deadline within the job's timeout"
    )


class JobSubmissionSchema(Schema):
    """A job to run (POST /api/v1/jobs/). Unknown fields are refused."""

    closed = True  # unknown fields are refused: additionalProperties false

    name = serializers.CharField(min_length=1, max_length=200)
    steps = StepSpecSchema(many=True, help_text="run in order; 1 to JOBPLATFORM_MAX_STEPS")
    input = serializers.JSONField(
        required=False, help_text="any JSON value, given to every step (at most 64 KiB)"
    )
    queue = serializers.CharField(required=False, max_length=64, default="default")
    priority = serializers.IntegerField(
        required=False, min_value=0, max_value=9, default=5, help_text="9 is the most urgent"
    )
    max_retries = serializers.IntegerField(required=False, min_value=0, default=3)
    retry_backoff = serializers.FloatField(
        required=False, min_value=0, default=2.0, help_text="seconds before the first retry"
    )
    retry_backoff_max = serializers.FloatField(required=False, min_value=0, default=300.0)
    retry_jitter = serializers.BooleanField(required=False, default=True)
    timeout = serializers.IntegerField(
        required=False, min_value=1, default=3600, help_text="seconds per attempt"
    )
    run_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="with a UTC offset; absent or null: now"
    )
    idempotency_key = serializers.CharField(
        required=False,
        min_length=1,
        max_length=255,
        help_text="or the Idempotency-Key header: the same key and body answer the same job",
    )
    concurrency_key = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=200,
        help_text="the owner's jobs with one key run at most max_concurrency at a time",
    )
    max_concurrency = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000,
        default=1,
        help_text="other than 1 only with a concurrency_key",
    )
    rate_limit = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=300,
        help_text="a rate limit the job counts against, besides its http steps' hosts' limits",
    )
    callback_url = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=2048,
        help_text="http(s) URL POSTed to, signed, once the job ends (not a private address)",
    )


class BulkSubmissionSchema(Schema):
    """Up to JOBPLATFORM_MAX_BULK_JOBS jobs, stored all or none."""

    closed = True

    jobs = JobSubmissionSchema(many=True, help_text="submissions, without idempotency_key")
    idempotency_key = serializers.CharField(
        required=False,
        min_length=1,
        max_length=255,
        help_text="or the Idempotency-Key header: the same key and batch answer the same jobs",
    )


class BulkSubmittedSchema(Schema):
    count = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.UUIDField(), help_text="in the order sent")


class JobChangeSchema(Schema):
    """PATCH /api/v1/jobs/{id}/: the one thing a client may change, while the job is pending."""

    closed = True
    whole = True  # not partial: the one field is required

    run_at = serializers.DateTimeField(help_text="with a UTC offset")


class AttemptErrorSchema(Schema):
    """Why an attempt, or a step, failed."""

    type = serializers.CharField(help_text="the exception's class name, or AttemptLost")
    code = serializers.CharField(help_text="STEP.* or EXECUTION.LOST (docs/errors.md)")
    message = serializers.CharField()
    permanent = serializers.BooleanField(help_text="true: not retried")
    step_index = serializers.IntegerField(required=False)
    step_type = serializers.CharField(required=False)
    traceback = serializers.CharField(required=False)
    attempt = serializers.IntegerField(required=False)


class JobLinksSchema(Schema):
    self = serializers.URLField()
    cancel = serializers.URLField()


class JobSummarySchema(Schema):
    """A job as lists show it."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    owner = serializers.CharField(help_text="the owner's username")
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    attempts = serializers.IntegerField(help_text="attempts started")
    run_at = serializers.DateTimeField()
    schedule = serializers.UUIDField(allow_null=True, help_text="the schedule that made it")
    scheduled_for = serializers.DateTimeField(allow_null=True, help_text="its schedule's tick")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    links = JobLinksSchema()


class StepResultSchema(Schema):
    index = serializers.IntegerField()
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=["succeeded", "failed"])
    output = serializers.JSONField()
    error = AttemptErrorSchema(allow_null=True)
    started_at = serializers.DateTimeField()
    duration_ms = serializers.FloatField()


class ExecutionSchema(Schema):
    """One attempt, with a result for each step it ran."""

    attempt = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["running", "succeeded", "failed", "cancelled", "lost"]
    )
    worker = serializers.CharField(help_text="the Celery worker's hostname")
    delivery_id = serializers.CharField(help_text="the Celery task id")
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    error = AttemptErrorSchema(allow_null=True)
    will_retry = serializers.BooleanField()
    retry_at = serializers.DateTimeField(allow_null=True)
    steps = StepResultSchema(many=True)


# jobs.selectors.job_waiting_for's reasons, in the order the release applies its controls.
WAITING_REASONS = (
    "run_at",
    "retry_backoff",
    "paused_queue",
    "circuit_breaker",
    "concurrency_key",
    "rate_limit",
    "queue_cap",
    "release",
)


class WaitingReasonSchema(Schema):
    """Why a pending or retrying job is not released yet (docs/flow-control.md): ``reason``,
    a ``message``, and the details of that reason."""

    reason = serializers.ChoiceField(choices=WAITING_REASONS)
    message = serializers.CharField()
    until = serializers.DateTimeField(required=False, help_text="run_at, retry_backoff")
    queue = serializers.CharField(required=False, help_text="paused_queue")
    paused_at = serializers.DateTimeField(required=False, allow_null=True, help_text="paused_queue")
    concurrency_key = serializers.CharField(required=False, help_text="concurrency_key")
    in_flight = serializers.IntegerField(
        required=False, help_text="concurrency_key, queue_cap: jobs queued or running"
    )
    max_concurrency = serializers.IntegerField(required=False, help_text="concurrency_key")
    max_in_flight = serializers.IntegerField(required=False, help_text="queue_cap")
    host = serializers.CharField(required=False, help_text="circuit_breaker")
    state = serializers.CharField(required=False, help_text="circuit_breaker: open, half_open")
    retry_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="circuit_breaker: its next probe"
    )
    limit = serializers.CharField(required=False, help_text="rate_limit: its name")
    rate = serializers.FloatField(required=False, help_text="rate_limit: tokens a second")
    burst = serializers.IntegerField(required=False, help_text="rate_limit")
    queued = serializers.IntegerField(
        required=False, help_text="release: the queue's jobs already in the broker"
    )


class JobDetailSchema(JobSummarySchema):
    """A job in full, with every attempt."""

    steps = StepSpecSchema(many=True)
    input = serializers.JSONField()
    max_retries = serializers.IntegerField()
    retry_backoff = serializers.FloatField()
    retry_backoff_max = serializers.FloatField()
    retry_jitter = serializers.BooleanField()
    timeout = serializers.IntegerField()
    next_step = serializers.IntegerField(help_text="where the next attempt resumes")
    result = serializers.JSONField(help_text="the last step's output, once succeeded")
    last_error = AttemptErrorSchema(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="while retrying")
    trace_id = serializers.CharField()
    updated_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    concurrency_key = serializers.CharField(allow_null=True)
    max_concurrency = serializers.IntegerField()
    rate_limit = serializers.CharField(allow_null=True)
    hosts = serializers.ListField(
        child=serializers.CharField(), help_text="its http steps' hosts (their limits, breakers)"
    )
    callback_url = serializers.CharField(
        allow_null=True,
        help_text="called once the job ends; userinfo and secret-looking query values redacted",
    )
    waiting_for = WaitingReasonSchema(
        many=True,
        required=False,
        help_text="why it is not released yet, computed now; empty unless pending or retrying. "
        "Left out of a submission's answer.",
    )
    executions = ExecutionSchema(many=True, help_text="oldest first")


class CallbackDeliverySchema(Schema):
    """One attempt to deliver a completion callback (docs/api.md#completion-callbacks)."""

    delivery_id = serializers.UUIDField(help_text="X-Jobplatform-Delivery: shared by retries")
    target = serializers.ChoiceField(choices=CallbackDelivery.Target.choices)
    url = serializers.CharField(help_text="secret-looking query values redacted")
    event = serializers.ChoiceField(choices=CallbackDelivery.Event.choices)
    attempt = serializers.IntegerField(help_text="1, then 2, ... for retries of one delivery")
    state = serializers.ChoiceField(choices=CallbackDelivery.State.choices)
    status_code = serializers.IntegerField(allow_null=True, help_text="the receiver's answer")
    error = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class CallbackDeliveryListSchema(Schema):
    results = CallbackDeliverySchema(many=True, help_text="oldest first")


class CallbackKeySchema(Schema):
    key = serializers.CharField(
        help_text="the HMAC key (use its text as the key's bytes, UTF-8): yours alone, derived "
        "from the platform's secret, so it changes when the operator rotates that"
    )
    algorithm = serializers.ChoiceField(choices=["hmac-sha256"])
    header = serializers.CharField(help_text="the header that carries sha256=<hex digest>")


class StepTypeSchema(Schema):
    name = serializers.CharField()
    description = serializers.CharField()
    params_schema = serializers.DictField(
        child=serializers.JSONField(), help_text="JSON Schema (2020-12) of the step's params"
    )


class StepTypeListSchema(Schema):
    results = StepTypeSchema(many=True)


class ExecutionListSchema(Schema):
    results = ExecutionSchema(many=True, help_text="oldest first")


class LastHourSchema(Schema):
    succeeded = serializers.IntegerField(help_text="jobs that finished so in the last hour")
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    throughput_per_minute = serializers.FloatField(
        help_text="(succeeded + failed) / 60: jobs run to an end per minute"
    )
    failure_rate = serializers.FloatField(
        allow_null=True, help_text="failed / (succeeded + failed); null when none ended"
    )


class JobStatsSchema(Schema):
    total = serializers.IntegerField()
    by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="every status, 0 included"
    )
    by_queue = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="queue -> status -> count (statuses with none left out)",
    )
    oldest_due_age_seconds = serializers.FloatField(
        allow_null=True,
        help_text="now - run_at of the oldest job due and not yet claimed (pending past its "
        "run_at, or queued); null when there is none",
    )
    last_hour = LastHourSchema()


class QueueLinksSchema(Schema):
    self = serializers.URLField()
    pause = serializers.URLField()
    resume = serializers.URLField()


class QueueSchema(Schema):
    """A queue: paused or not, its in-flight cap, and its jobs in flight."""

    name = serializers.CharField()
    paused = serializers.BooleanField(help_text="true: the dispatcher releases none of its jobs")
    paused_at = serializers.DateTimeField(allow_null=True)
    max_in_flight = serializers.IntegerField(
        allow_null=True, help_text="most jobs queued + running at once; null: no cap"
    )
    max_in_flight_is_default = serializers.BooleanField(
        help_text="the cap is JOBPLATFORM_QUEUE_MAX_IN_FLIGHT, not the queue's own"
    )
    max_queued = serializers.IntegerField(
        allow_null=True, help_text="JOBPLATFORM_DISPATCH_MAX_QUEUED, the broker depth's bound"
    )
    queued = serializers.IntegerField(help_text="released, in the broker")
    running = serializers.IntegerField()
    links = QueueLinksSchema()


class QueueListSchema(Schema):
    results = QueueSchema(many=True, help_text="the configured queues, then any other")


class QueueChangeSchema(Schema):
    """PATCH /api/v1/queues/{name}/ (admins): the queue's in-flight cap."""

    closed = True
    whole = True

    max_in_flight = serializers.IntegerField(
        allow_null=True, min_value=1, help_text="null: back to JOBPLATFORM_QUEUE_MAX_IN_FLIGHT"
    )


class LimitsSchema(Schema):
    """The caller's admission caps, its unfinished jobs and its fair-share weight."""

    max_unfinished = serializers.IntegerField(
        allow_null=True, help_text="the caller's cap on unfinished jobs; null: none"
    )
    unfinished = serializers.IntegerField(
        allow_null=True, help_text="counted now; null when the caller has no cap"
    )
    weight = serializers.IntegerField(help_text="the caller's share of a queue's room (1 to 100)")
    platform_max_unfinished = serializers.IntegerField(
        allow_null=True, help_text="the cap on every owner's unfinished jobs together; null: none"
    )
    max_bulk_jobs = serializers.IntegerField(help_text="JOBPLATFORM_MAX_BULK_JOBS")
    retry_after = serializers.IntegerField(help_text="seconds a 429 asks a client to wait")


class RateLimitSchema(Schema):
    """A named token bucket (docs/flow-control.md)."""

    name = serializers.CharField(help_text="a name jobs give, or an http host[:port]")
    rate = serializers.FloatField(help_text="tokens added per second")
    burst = serializers.IntegerField(help_text="most tokens saved up")
    tokens = serializers.IntegerField(
        allow_null=True, help_text="whole tokens in the bucket now; null: Redis did not answer"
    )
    held = serializers.IntegerField(help_text="jobs waiting for a token")
    updated_at = serializers.DateTimeField()
    links = serializers.DictField(child=serializers.URLField(), help_text="self")


class RateLimitListSchema(Schema):
    results = RateLimitSchema(many=True)


class RateLimitChangeSchema(Schema):
    """PUT /api/v1/rate-limits/{name}/ (admins): create or change the limit."""

    closed = True

    rate = serializers.FloatField(help_text="tokens a second, above 0")
    burst = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="default: one second's worth"
    )


class BreakerSchema(Schema):
    """An http host's circuit breaker (closed if it never failed)."""

    host = serializers.CharField()
    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    failures = serializers.IntegerField(help_text="transient failures in the window")
    window_started_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    retry_at = serializers.DateTimeField(allow_null=True, help_text="its next probe")
    manual = serializers.BooleanField(help_text="opened by an operator: only one closes it")
    probe_job = serializers.UUIDField(allow_null=True)
    probe_at = serializers.DateTimeField(allow_null=True)
    held = serializers.IntegerField(help_text="jobs waiting for it")
    links = serializers.DictField(child=serializers.URLField(), help_text="self, open, close")


class BreakerListSchema(Schema):
    results = BreakerSchema(many=True)
