"""The built-in steps: sleep, log, compute, http, fail."""

from __future__ import annotations

import logging
from typing import Any

from jobs.steps import http
from jobs.steps.errors import PermanentStepError, StepStopped, TransientStepError
from jobs.steps.registry import StepContext, step

logger = logging.getLogger("jobplatform.steps")

MAX_SLEEP_SECONDS = 3600
MAX_COMPUTE_SIZE = 20_000_000


@step(
    "sleep",
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP_SECONDS}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
)
def sleep_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Wait for a number of seconds (stops early if the job is cancelled)."""
    if ctx.stop.wait(params["seconds"]):
        raise StepStopped("the job was cancelled while sleeping")
    return {"slept": params["seconds"]}


@step(
    "log",
    schema={
        "type": "object",
        "properties": {
            "message": {"type": "string", "maxLength": 4096},
            "level": {"enum": ["debug", "info", "warning", "error"], "default": "info"},
        },
        "required": ["message"],
        "additionalProperties": False,
    },
)
def log_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Write a message to the worker's log, tagged with the job and attempt."""
    level = params.get("level", "info")
    logger.log(
        logging.getLevelName(level.upper()),
        "%s",
        params["message"],
        extra={"job_id": str(ctx.job_id), "attempt": ctx.attempt, "step_index": ctx.step_index},
    )
    return {"message": params["message"], "level": level}


@step(
    "compute",
    schema={
        "type": "object",
        "properties": {"size": {"type": "integer", "minimum": 2, "maximum": MAX_COMPUTE_SIZE}},
        "required": ["size"],
        "additionalProperties": False,
    },
)
def compute_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Count the primes below ``size`` with a sieve of Eratosthenes (CPU-bound, O(n log log n))."""
    size = params["size"]
    sieve = bytearray([1]) * size
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(size**0.5) + 1):
        if n % 64 == 0 and ctx.stop.is_set():
            raise StepStopped("the job was cancelled while computing")
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, size, n)))
    return {"size": size, "primes": sum(sieve)}


@step(
    "fail",
    schema={
        "type": "object",
        "properties": {
            "mode": {"enum": ["transient", "permanent"], "default": "transient"},
            "message": {"type": "string", "maxLength": 1024},
            "times": {
                "type": "integer",
                "minimum": 1,
                "description": "fail only on the first `times` attempts; always when absent",
            },
        },
        "additionalProperties": False,
    },
)
def fail_step(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Fail on purpose, transiently or permanently, optionally only on the first k attempts."""
    times = params.get("times")
    if times is not None and ctx.attempt > times:
        return {"failed": False, "attempt": ctx.attempt}
    message = params.get("message") or f"fail step, attempt {ctx.attempt}"
    if params.get("mode", "transient") == "permanent":
        raise PermanentStepError(message, code="STEP.FAIL_PERMANENT")
    raise TransientStepError(message, code="STEP.FAIL_TRANSIENT")


step("http", schema=http.SCHEMA)(http.http_step)
