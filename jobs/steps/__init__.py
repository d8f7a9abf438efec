"""The step vocabulary. A user module registers its own steps with :func:`step`::

    from jobs.steps import PermanentStepError, StepContext, step

    @step("reverse", schema={"type": "object", "properties": {"text": {"type": "string"}},
                             "required": ["text"], "additionalProperties": False})
    def reverse(params: dict, ctx: StepContext) -> dict:
        return {"text": params["text"][::-1]}

and names the module in ``JOBPLATFORM_STEP_MODULES``.
"""

from __future__ import annotations

from jobs.steps.errors import (
    AttemptError,
    PermanentStepError,
    StepError,
    StepStopped,
    StepTimeout,
    TransientStepError,
)
from jobs.steps.registry import StepContext, StepType, get_step, registered_steps, step

__all__ = [
    "AttemptError",
    "PermanentStepError",
    "StepContext",
    "StepError",
    "StepStopped",
    "StepTimeout",
    "StepType",
    "TransientStepError",
    "get_step",
    "registered_steps",
    "step",
]
