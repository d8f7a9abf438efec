"""The claim: one statement moves a job to RUNNING for one attempt and inserts its Execution."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

from executions.models import Execution
from jobplatform.db import prepared_cursor
from jobs import lifecycle
from jobs.lifecycle import sql, sql_in
from jobs.retry import RetryPolicy


@dataclass(frozen=True)
class Claim:
    """An attempt this worker owns: what it runs, and the fence every write of it carries."""

    job_id: UUID
    attempt: int
    execution_id: int
    started_at: datetime
    steps: list[dict[str, Any]]
    input: Any
    next_step: int
    step_outputs: list[Any]
    policy: RetryPolicy
    timeout: int
    retry_base: int = 0  # attempts before the current retry budget (a manual retry resets it)
    worker: str = ""

    @property
    def budget_attempt(self) -> int:
        """The attempt's number within its retry budget: what the retry policy counts."""
        return self.attempt - self.retry_base


# One statement, so one round trip and one commit: the claim of the job and the attempt's row
# are atomic without a transaction block (the hot path: every attempt pays for it).
_CLAIM_SQL = f"""
WITH claimed AS (
    UPDATE jobs_job
    SET status = {sql(lifecycle.CLAIM.target)}, attempts = attempts + 1, next_attempt_at = NULL,
        started_at = COALESCE(started_at, %(now)s), updated_at = %(now)s, version = version + 1
    WHERE id = %(job)s AND status IN {sql_in(lifecycle.CLAIM.sources)}
      AND attempts = %(attempt)s - 1
    RETURNING id, steps, input, next_step, step_outputs,
              max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base
), execution AS (
    INSERT INTO executions_execution
        (job_id, attempt, status, worker, delivery_id, started_at, heartbeat_at, will_retry)
    SELECT id, %(attempt)s, {sql(Execution.Status.RUNNING)}, %(worker)s, %(delivery)s,
           %(now)s, %(now)s, false
    FROM claimed
    RETURNING id
)
SELECT execution.id, steps, input, next_step, step_outputs,
       max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base
FROM claimed, execution
"""


def _json(value: Any) -> Any:
    # Django loads jsonb columns as text on raw cursors (JSONField decodes them itself).
    return json.loads(value) if isinstance(value, str) else value


def execution_claim(*, job_id: UUID, attempt: int, delivery_id: str, worker: str) -> Claim | None:
    """QUEUED|RETRYING -> RUNNING for attempt ``attempt``, with its Execution row; None if taken.

    The message names the attempt it starts, so a second delivery of it — while the attempt runs,
    after it finished, or after the job moved on to a later attempt — matches no row.
    """
    now = timezone.now()
    params = {
        "now": now,
        "job": job_id,
        "attempt": attempt,
        "worker": worker,
        "delivery": delivery_id,
    }
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    (
        execution_id,
        steps,
        job_input,
        next_step,
        outputs,
        max_retries,
        backoff,
        backoff_max,
        jitter,
        timeout,
        retry_base,
    ) = row
    return Claim(
        job_id=job_id,
        attempt=attempt,
        execution_id=execution_id,
        started_at=now,
        steps=_json(steps),
        input=_json(job_input),
        next_step=next_step,
        step_outputs=_json(outputs),
        policy=RetryPolicy(
            max_retries=max_retries, backoff=backoff, backoff_max=backoff_max, jitter=jitter
        ),
        timeout=timeout,
        retry_base=retry_base,
        worker=worker,
    )
