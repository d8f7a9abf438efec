"""Recording what each step of an attempt did, and moving the job's resume point past it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from executions.models import Execution
from executions.services.claim import Claim
from jobplatform.db import prepared_cursor
from jobs import lifecycle
from jobs.lifecycle import sql, sql_in
from jobs.steps import AttemptError


@dataclass(frozen=True)
class StepRecord:
    """What one step of an attempt did, on its way into executions_stepresult."""

    index: int
    type: str
    status: str  # a StepResult.Status
    output: Any
    error: AttemptError | None
    started_at: datetime
    duration_ms: float

    def params(self, claim: Claim) -> dict[str, Any]:
        return {
            "execution": claim.execution_id,
            "index": self.index,
            "type": self.type,
            "step_status": self.status,
            "output": None if self.output is None else json.dumps(self.output),
            "error": None if self.error is None else json.dumps(self.error.as_dict()),
            "step_started_at": self.started_at,
            "duration_ms": self.duration_ms,
        }


# Recorded only while the attempt is still open: an attempt the reaper declared lost (its worker
# was only partitioned away) must not add results that a later attempt also records.
INSERT_STEP = f"""
INSERT INTO executions_stepresult
    (execution_id, index, type, status, output, error, started_at, duration_ms)
SELECT %(execution)s, %(index)s, %(type)s, %(step_status)s, %(output)s, %(error)s,
       %(step_started_at)s, %(duration_ms)s
WHERE EXISTS (
    SELECT FROM executions_execution
    WHERE id = %(execution)s AND status = {sql(Execution.Status.RUNNING)}
)
"""

# The fence of every write an attempt makes on its job: it still owns the job.
ATTEMPT_FENCE = f"status IN {sql_in(lifecycle.IN_ATTEMPT)} AND attempts = %(attempt)s"

_PROGRESS_JOB = f"""
UPDATE jobs_job SET next_step = %(next_step)s, step_outputs = %(outputs)s, updated_at = %(now)s
WHERE id = %(job)s AND {ATTEMPT_FENCE}
"""
# The step's result and the job's resume point in one statement: one round trip, one commit.
_STEP_DONE_SQL = f"WITH step AS ({INSERT_STEP}) {_PROGRESS_JOB}"


def fence(claim: Claim) -> dict[str, Any]:
    """Parameters naming this attempt: every write of it matches only while it owns the job."""
    return {"job": claim.job_id, "attempt": claim.attempt, "now": timezone.now()}


def step_done(claim: Claim, result: StepRecord, outputs: list[Any]) -> bool:
    """Record a finished step and move the job's resume point past it. False if cancelled."""
    params = {
        **result.params(claim),
        **fence(claim),
        "next_step": result.index + 1,
        "outputs": json.dumps(outputs),
    }
    with prepared_cursor() as cursor:
        cursor.execute(_STEP_DONE_SQL, params, prepare=True)
        return cursor.rowcount == 1
