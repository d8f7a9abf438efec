"""The claim: one statement moves a job to RUNNING for one attempt and inserts its Execution."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

from executions.models import Execution
from jobplatform.db import prepared_cursor
from jobs import lifecycle
from jobs.breaker import CLOSED as BREAKER_CLOSED
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
    queue: str = "default"
    trace_id: str = ""
    due_at: datetime | None = None  # when the attempt was due: run_at, or a retry's time
    callback: bool = False  # the job has a callback_url (jobs.callbacks), called when it ends
    # At the claim, a host of the job's http steps had a circuit breaker that was not closed:
    # only then may a success close one (executions.pipeline.report_to_breaker).
    breakers: bool = False

    @property
    def budget_attempt(self) -> int:
        """The attempt's number within its retry budget: what the retry policy counts."""
        return self.attempt - self.retry_base


def claim_ctes(prefix: str = "") -> str:
    """The claim as two CTEs, ``claimed`` (the job) and ``execution`` (its new row), with
    parameters named ``<prefix>job``, ``<prefix>attempt``, ``<prefix>now``, ``<prefix>worker``
    and ``<prefix>delivery``: a prefix lets another statement carry a claim (a batch's success
    of one job and claim of the next, ``executions.services.outcomes``)."""
    p = prefix
    return f"""claimed AS (
    UPDATE jobs_job
    SET status = {sql(lifecycle.CLAIM.target)}, attempts = attempts + 1, next_attempt_at = NULL,
        started_at = COALESCE(started_at, %({p}now)s), updated_at = %({p}now)s,
        version = version + 1
    WHERE id = %({p}job)s AND status IN {sql_in(lifecycle.CLAIM.sources)}
      AND attempts = %({p}attempt)s - 1
    RETURNING id, steps, input, next_step, step_outputs,
              max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base,
              queue, trace_id,
              -- When the attempt was due (for the start-lag metric): the retry's time, which this
              -- UPDATE clears, or run_at. A sub-select in the statement reads the row as it was.
              (SELECT coalesce(d.next_attempt_at, d.run_at) FROM jobs_job AS d
               WHERE d.id = jobs_job.id) AS due_at,
              callback_url <> '' AS callback,
              -- A host of the job with a breaker not closed (one probe of the primary key per
              -- host; none for a job without http steps): whether its successes report.
              EXISTS (SELECT FROM jobs_circuitbreaker AS b
                      WHERE b.host = ANY (jobs_job.hosts) AND b.state <> {sql(BREAKER_CLOSED)})
                  AS breakers
), execution AS (
    INSERT INTO executions_execution
        (job_id, attempt, status, worker, delivery_id, started_at, heartbeat_at, will_retry)
    SELECT id, %({p}attempt)s, {sql(Execution.Status.RUNNING)}, %({p}worker)s, %({p}delivery)s,
           %({p}now)s, %({p}now)s, false
    FROM claimed
    RETURNING id
)"""


# What a claim returns, in the order ClaimRequest.claim reads it.
CLAIM_COLUMNS = """execution.id, steps, input, next_step, step_outputs,
       max_retries, retry_backoff, retry_backoff_max, retry_jitter, timeout, retry_base,
       queue, trace_id, due_at, callback, breakers"""

# One statement, so one round trip and one commit: the claim of the job and the attempt's row
# are atomic without a transaction block (the hot path: every attempt pays for it).
_CLAIM_SQL = f"WITH {claim_ctes()}\nSELECT {CLAIM_COLUMNS}\nFROM claimed, execution"


def _json(value: Any) -> Any:
    # Django loads jsonb columns as text on raw cursors (JSONField decodes them itself).
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ClaimRequest:
    """An attempt a message asks to start: what its claim is fenced by."""

    job_id: UUID
    attempt: int
    delivery_id: str
    worker: str

    def params(self, now: datetime, prefix: str = "") -> dict[str, Any]:
        return {
            f"{prefix}now": now,
            f"{prefix}job": self.job_id,
            f"{prefix}attempt": self.attempt,
            f"{prefix}worker": self.worker,
            f"{prefix}delivery": self.delivery_id,
        }

    def claim(self, row: Sequence[Any], now: datetime) -> Claim:
        """The Claim from a row of CLAIM_COLUMNS."""
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
            queue,
            trace_id,
            due_at,
            callback,
            breakers,
        ) = row
        return Claim(
            job_id=self.job_id,
            attempt=self.attempt,
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
            worker=self.worker,
            queue=queue,
            trace_id=trace_id,
            due_at=due_at,
            callback=callback,
            breakers=breakers,
        )


def execution_claim(*, job_id: UUID, attempt: int, delivery_id: str, worker: str) -> Claim | None:
    """QUEUED|RETRYING -> RUNNING for attempt ``attempt``, with its Execution row; None if taken.

    The message names the attempt it starts, so a second delivery of it — while the attempt runs,
    after it finished, or after the job moved on to a later attempt — matches no row.
    """
    request = ClaimRequest(job_id=job_id, attempt=attempt, delivery_id=delivery_id, worker=worker)
    now = timezone.now()
    with prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, request.params(now), prepare=True)
        row = cursor.fetchone()
    return None if row is None else request.claim(row, now)
