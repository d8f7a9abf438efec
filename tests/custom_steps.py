"""A user's own step module, registered through JOBPLATFORM_STEP_MODULES (see tests/settings.py)."""

from __future__ import annotations

from typing import Any

from jobs.steps import StepContext, step


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
