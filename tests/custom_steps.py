"""A user's own step module, registered through JOBPLATFORM_STEP_MODULES (see tests/settings.py)."""

from __future__ import annotations

from typing import Any

import httpx

from jobs.steps import StepContext, StepStopped, step


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
