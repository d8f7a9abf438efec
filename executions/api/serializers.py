"""Attempts as the API shows them, in plain code (a job's detail renders all of its attempts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from executions.models import Execution, StepResult
from jobplatform.api.render import api_datetime


def step_result_output(step: StepResult) -> dict[str, Any]:
    return {
        "index": step.index,
        "type": step.type,
        "status": step.status,
        "output": step.output,
        "error": step.error,
        "started_at": api_datetime(step.started_at),
        "duration_ms": float(step.duration_ms),
    }


def execution_output(executions: Iterable[Execution]) -> list[dict[str, Any]]:
    """Each attempt with its steps (prefetched as ``step_results``), in the order given."""
    return [
        {
            "attempt": execution.attempt,
            "status": execution.status,
            "worker": execution.worker,
            "delivery_id": execution.delivery_id,
            "started_at": api_datetime(execution.started_at),
            "finished_at": api_datetime(execution.finished_at),
            "error": execution.error,
            "will_retry": execution.will_retry,
            "retry_at": api_datetime(execution.retry_at),
            "steps": [step_result_output(step) for step in execution.step_results.all()],
        }
        for execution in executions
    ]
