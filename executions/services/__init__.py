"""Writes on attempts, by concern: the claim, step results, and how an attempt ends.

The step loop that uses them is ``executions.pipeline``; the reaper is ``executions.reaper``.
"""

from __future__ import annotations

from executions.services.claim import Claim, execution_claim
from executions.services.outcomes import (
    RunOutcome,
    attempt_cancelled,
    attempt_failed,
    attempt_succeeded,
    dead_letter_reason,
    finish_execution,
    job_to_failed,
    job_to_retrying,
)
from executions.services.step_results import StepRecord, step_done

__all__ = [
    "Claim",
    "RunOutcome",
    "StepRecord",
    "attempt_cancelled",
    "attempt_failed",
    "attempt_succeeded",
    "dead_letter_reason",
    "execution_claim",
    "finish_execution",
    "job_to_failed",
    "job_to_retrying",
    "step_done",
]
