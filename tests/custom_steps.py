"""A user's own step module, registered through JOBPLATFORM_STEP_MODULES (see tests/settings.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from jobs.steps import PermanentStepError, StepContext, StepStopped, step


@step(
    "reverse",
    schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
)
def reverse(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Reverse a text, and pass on the previous step's output (outputs flow down the pipeline)."""
    return {"text": params["text"][::-1], "previous": ctx.outputs[-1] if ctx.outputs else None}


@step(
    "tick",
    schema={
        "type": "object",
        "properties": {"url": {"type": "string"}, "seconds": {"type": "number", "minimum": 0}},
        "required": ["url"],
        "additionalProperties": False,
    },
)
def tick(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Report (job, step, attempt) to a test server, then sleep: a side effect tests can count."""
    body = {"job": str(ctx.job_id), "step": ctx.step_index, "attempt": ctx.attempt}
    httpx.post(params["url"], json=body, timeout=10).raise_for_status()
    if ctx.stop.wait(params.get("seconds", 0)):
        raise StepStopped("stopped while ticking")
    return {"attempt": ctx.attempt}


@step(
    "unstorable",
    schema={
        "type": "object",
        "properties": {"where": {"enum": ["output", "error"]}},
        "required": ["where"],
        "additionalProperties": False,
    },
)
def unstorable(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Return, or fail with, text PostgreSQL cannot store (a NUL and a lone surrogate)."""
    if params["where"] == "error":
        raise PermanentStepError("bad\x00news \ud800")
    return {"text": "a\x00b"}


@step(
    "vault",
    schema={
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "password": {"type": "string", "writeOnly": True},
            "extra": {"type": "object", "additionalProperties": {"writeOnly": True}},
        },
        "additionalProperties": False,
    },
)
def vault(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """A step with secret params: it proves it got the real values without returning them."""
    return {"password_length": len(params.get("password", ""))}


@step(
    "spin",
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
)
def spin(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Busy pure-Python code that never looks at ``ctx.stop``: only a raise in its thread stops
    it (SIGALRM on the main thread, the watchdog's on the threads pool)."""
    end, turns = time.monotonic() + params["seconds"], 0
    while time.monotonic() < end:
        turns += 1
    return {"turns": turns}


@step(
    "stuck",
    schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
)
def stuck(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Blocked in one C call (``time.sleep``) that nothing raised in its thread interrupts, then
    succeeds: a step that will not stop at its deadline, and writes late."""
    time.sleep(params["seconds"])
    return {"slept": params["seconds"]}
