"""A job submission as the API parsed it (JobSpec) and the rules its values must keep."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobplatform.errors import InvalidInput
from jobs.callbacks.services import callback_url_validate
from jobs.steps import get_step, registered_steps


@dataclass(frozen=True)
class JobSpec:
    """A submission as the API parsed it; values are checked by :func:`job_validate`."""

    name: str
    steps: list[Any]
    input: Any = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    max_retries: int = 3
    retry_backoff: float = 2.0
    retry_backoff_max: float = 300.0
    retry_jitter: bool = True
    timeout: int = 3600
    run_at: datetime | None = None
    # Jobs with one key run at most max_concurrency at a time (docs/architecture.md#flow-control).
    concurrency_key: str | None = None
    max_concurrency: int = 1
    # A named rate limit the job counts against, besides those of its http steps' hosts.
    rate_limit: str | None = None
    # POSTed to, signed, once the job ends (jobs.callbacks); empty: no callback.
    callback_url: str = ""


def job_validate(*, spec: JobSpec, valid_steps: set[str] | None = None) -> None:
    """Raise InvalidInput with a JOBS.* code for the first rule ``spec`` breaks.

    ``valid_steps`` remembers pipelines already found valid (canonical JSON) across calls.
    """
    if valid_steps is None:
        _validate_steps(spec.steps)
    else:
        key = json.dumps(spec.steps, sort_keys=True, default=str)
        if key not in valid_steps:
            _validate_steps(spec.steps)
            valid_steps.add(key)
    input_bytes = len(json.dumps(spec.input, separators=(",", ":")).encode())
    if input_bytes > settings.JOBPLATFORM_MAX_INPUT_BYTES:
        raise InvalidInput(
            "JOBS.INPUT_TOO_LARGE",
            f"input is {input_bytes} bytes; the limit is {settings.JOBPLATFORM_MAX_INPUT_BYTES}",
            {"size": input_bytes, "limit": settings.JOBPLATFORM_MAX_INPUT_BYTES},
        )
    if spec.queue not in settings.JOBPLATFORM_QUEUES:
        raise InvalidInput(
            "JOBS.UNKNOWN_QUEUE",
            f"no worker serves queue {spec.queue!r}",
            {"queue": spec.queue, "queues": settings.JOBPLATFORM_QUEUES},
        )
    if not 0 <= spec.priority <= 9:
        raise InvalidInput("JOBS.INVALID_PRIORITY", "priority must be between 0 and 9")
    _validate_retry_policy(spec)
    if not 1 <= spec.timeout <= settings.JOBPLATFORM_MAX_JOB_TIMEOUT:
        raise InvalidInput(
            "JOBS.INVALID_TIMEOUT",
            f"timeout must be between 1 and {settings.JOBPLATFORM_MAX_JOB_TIMEOUT} seconds",
        )
    if spec.run_at is not None and timezone.is_naive(spec.run_at):
        raise InvalidInput(
            "JOBS.NAIVE_RUN_AT",
            "run_at needs a UTC offset, e.g. 2026-01-01T09:00:00+01:00 or ...Z",
        )
    _validate_concurrency(spec)
    if spec.rate_limit is not None and not 1 <= len(spec.rate_limit) <= MAX_RATE_LIMIT_NAME:
        raise InvalidInput(
            "JOBS.INVALID_RATE_LIMIT",
            f"rate_limit must name a limit in 1 to {MAX_RATE_LIMIT_NAME} characters",
        )
    if spec.callback_url:
        callback_url_validate(spec.callback_url)


MAX_CONCURRENCY_KEY = 200  # characters (Job.concurrency_key)
MAX_CONCURRENCY = 10_000
MAX_RATE_LIMIT_NAME = 300  # characters (RateLimit.name)


def _validate_concurrency(spec: JobSpec) -> None:
    if (
        spec.concurrency_key is not None
        and not 1 <= len(spec.concurrency_key) <= MAX_CONCURRENCY_KEY
    ):
        raise InvalidInput(
            "JOBS.INVALID_CONCURRENCY_KEY",
            f"concurrency_key must have 1 to {MAX_CONCURRENCY_KEY} characters",
        )
    if not 1 <= spec.max_concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(
            "JOBS.INVALID_MAX_CONCURRENCY",
            f"max_concurrency must be between 1 and {MAX_CONCURRENCY}",
        )
    if spec.max_concurrency != 1 and spec.concurrency_key is None:
        raise InvalidInput(
            "JOBS.INVALID_MAX_CONCURRENCY",
            "max_concurrency limits the jobs of a concurrency_key: give one",
        )


def _validate_steps(steps: list[Any]) -> None:
    if not steps:
        raise InvalidInput("JOBS.NO_STEPS", "a job needs at least one step")
    if len(steps) > settings.JOBPLATFORM_MAX_STEPS:
        raise InvalidInput(
            "JOBS.TOO_MANY_STEPS",
            f"{len(steps)} steps; the limit is {settings.JOBPLATFORM_MAX_STEPS}",
            {"count": len(steps), "limit": settings.JOBPLATFORM_MAX_STEPS},
        )
    for index, spec in enumerate(steps):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} must be an object with a string 'type' and optional 'params'",
                {"index": index},
            )
        unknown_keys = set(spec) - {"type", "params", "timeout"}
        if unknown_keys:
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} has unknown keys {sorted(unknown_keys)}",
                {"index": index, "keys": sorted(unknown_keys)},
            )
        step_timeout = spec.get("timeout")
        if step_timeout is not None and (
            isinstance(step_timeout, bool)
            or not isinstance(step_timeout, int | float)
            or not 0 < step_timeout <= settings.JOBPLATFORM_MAX_JOB_TIMEOUT
        ):
            raise InvalidInput(
                "JOBS.INVALID_STEP",
                f"step {index} timeout must be a number of seconds above 0",
                {"index": index},
            )
        step_type = get_step(spec["type"])
        if step_type is None:
            raise InvalidInput(
                "JOBS.UNKNOWN_STEP_TYPE",
                f"step {index} has unknown type {spec['type']!r}",
                {
                    "index": index,
                    "type": spec["type"],
                    "known": [s.name for s in registered_steps()],
                },
            )
        errors = step_type.validation_errors(spec.get("params", {}))
        if errors:
            raise InvalidInput(
                "JOBS.INVALID_STEP_PARAMS",
                f"step {index} ({spec['type']}): {errors[0]['message']}",
                {"index": index, "type": spec["type"], "errors": errors},
            )


def _validate_retry_policy(spec: JobSpec) -> None:
    limit = settings.JOBPLATFORM_MAX_RETRIES
    if not 0 <= spec.max_retries <= limit:
        raise InvalidInput("JOBS.INVALID_RETRY_POLICY", f"max_retries must be 0 to {limit}")
    backoff_limit = settings.JOBPLATFORM_MAX_RETRY_BACKOFF
    if not 0 <= spec.retry_backoff <= backoff_limit:
        raise InvalidInput(
            "JOBS.INVALID_RETRY_POLICY", f"retry_backoff must be 0 to {backoff_limit} seconds"
        )
    if not spec.retry_backoff <= spec.retry_backoff_max <= backoff_limit:
        raise InvalidInput(
            "JOBS.INVALID_RETRY_POLICY",
            f"retry_backoff_max must be between retry_backoff and {backoff_limit} seconds",
        )
