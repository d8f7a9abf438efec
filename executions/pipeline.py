"""The step loop: claim an attempt, run its steps from where the last attempt stopped, record
each step, and end the attempt through ``executions.services.outcomes``."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from django.db import DatabaseError
from django.utils import timezone

from executions import observe
from executions.heartbeat import heartbeat
from executions.models import StepResult
from executions.services.claim import Claim, ClaimRequest, execution_claim
from executions.services.outcomes import (
    RunOutcome,
    attempt_cancelled,
    attempt_failed,
    attempt_succeeded,
)
from executions.services.step_results import StepRecord, step_done
from executions.timeouts import run_within
from jobplatform.text import UNSTORABLE, unstorable_paths
from jobs.services.dependencies import breaker_failure, breaker_success
from jobs.steps import (
    AttemptError,
    PermanentStepError,
    StepContext,
    StepStopped,
    StepTimeout,
    get_step,
)
from jobs.steps.http import HOST_FAILURES, step_host

logger = logging.getLogger("jobplatform.executions")


def execution_run(*, job_id: UUID, attempt: int, delivery_id: str, worker: str) -> RunOutcome:
    """Claim attempt ``attempt`` of the job and run its steps from where the last one stopped."""
    claim = execution_claim(job_id=job_id, attempt=attempt, delivery_id=delivery_id, worker=worker)
    return run_claimed(claim, ClaimRequest(job_id, attempt, delivery_id, worker))


def executions_run(requests: Sequence[ClaimRequest]) -> Iterator[tuple[ClaimRequest, RunOutcome]]:
    """Run the attempts of a batch in turn, each as :func:`execution_run` would, yielding each
    outcome once it is committed.

    When a job succeeds, its success and the claim of the next job are one statement (one round
    trip, one commit); after any other ending the next job is claimed on its own. Each job is
    claimed only when its turn comes, so the jobs behind it stay QUEUED until then.
    """
    then_tried, then_claim = False, None
    for index, request in enumerate(requests):
        if then_tried:
            claim = then_claim
        else:
            claim = execution_claim(
                job_id=request.job_id,
                attempt=request.attempt,
                delivery_id=request.delivery_id,
                worker=request.worker,
            )
        then = requests[index + 1] if index + 1 < len(requests) else None
        outcome = run_claimed(claim, request, then=then)
        then_tried, then_claim = outcome.then_tried, outcome.then_claim
        yield request, outcome


def run_claimed(
    claim: Claim | None, request: ClaimRequest, *, then: ClaimRequest | None = None
) -> RunOutcome:
    if claim is None:
        logger.info(
            "job %s attempt %d: nothing to claim (delivery %s)",
            request.job_id,
            request.attempt,
            request.delivery_id,
        )
        return RunOutcome(status="duplicate")
    observe.attempt_claimed(claim)
    began = time.perf_counter()
    stop = heartbeat().track(claim.execution_id)
    try:
        outcome = run_steps(claim, stop, then=then)
    finally:
        heartbeat().untrack(claim.execution_id)
    observe.attempt_ended(claim, outcome, time.perf_counter() - began)
    return outcome


def run_steps(
    claim: Claim, stop: threading.Event, *, then: ClaimRequest | None = None
) -> RunOutcome:
    """Run the claimed attempt's remaining steps under the attempt's deadline."""
    outputs = list(claim.step_outputs)
    deadline = time.monotonic() + claim.timeout
    for index in range(claim.next_step, len(claim.steps)):
        spec = claim.steps[index]
        left = deadline - time.monotonic()
        ctx = StepContext(
            job_id=claim.job_id,
            attempt=claim.attempt,
            step_index=index,
            input=claim.input,
            outputs=tuple(outputs),
            timeout=min(left, spec.get("timeout") or left),
            stop=stop,
        )
        observe.step_started(index, spec["type"])
        started_at = timezone.now()
        began = time.perf_counter()
        try:
            output, error = run_step(
                spec, ctx, abandon=partial(attempt_abandoned, claim, index, spec, started_at)
            )
        except StepStopped:
            return attempt_cancelled(claim)
        seconds = time.perf_counter() - began
        observe.step_ended(spec["type"], seconds)
        if spec["type"] == "http":
            report_to_breaker(spec, error, closing=claim.breakers)
        result = StepRecord(
            index=index,
            type=spec["type"],
            status=StepResult.Status.FAILED if error else StepResult.Status.SUCCEEDED,
            output=output,
            error=error,
            started_at=started_at,
            duration_ms=seconds * 1000,
        )
        if error is not None:
            return attempt_failed(claim, result, error)
        outputs.append(output)
        if index == len(claim.steps) - 1:
            return attempt_succeeded(claim, result, outputs, then=then)
        if not step_done(claim, result, outputs):
            return attempt_cancelled(claim)
    # A pipeline with nothing left to run (resumed past its last step) succeeds as it is.
    return attempt_succeeded(claim, None, outputs)


def report_to_breaker(
    spec: dict[str, Any], error: AttemptError | None, *, closing: bool = True
) -> None:
    """Tell the circuit breaker of an http step's host how the request went: a transient
    failure of the host counts towards opening it; a success closes a half-open one.

    ``closing``: whether a breaker of the job's hosts was not closed when the attempt was
    claimed (``Claim.breakers``). If none was, a success is not reported: the statement would
    match nothing, and it was a round trip and a quarter of the worker's CPU per http job. A
    breaker turns half-open only when a release lets its probe through, which commits before
    the probe's message is published, so the probe's claim always sees it and the probe's
    success always closes it; what a success skipped this way would have done is close a
    half-open breaker early, on behalf of a job released before the breaker opened, which the
    probe does moments later (and a probe that never reaches the host is replaced after the
    cooldown, as before)."""
    if error is None and not closing:
        return
    host = step_host(spec.get("params", {}).get("url"))
    if host is None:
        return
    try:
        if error is None:
            breaker_success(host=host)
        elif not error.permanent and error.code in HOST_FAILURES:
            breaker_failure(host=host)
    except DatabaseError:  # the attempt's own record matters more; it goes on without this
        logger.exception("circuit breaker of %s: could not record the outcome", host)


def attempt_abandoned(
    claim: Claim, index: int, spec: dict[str, Any], started_at: datetime, seconds: float
) -> None:
    """End the attempt of a step that ran past its deadline and did not stop (the watchdog
    calls it, from its own thread): as the step's thread would after a StepTimeout."""
    error = AttemptError.from_exception(
        StepTimeout(f"the step ran for more than {seconds:.3g}s and did not stop: abandoned"),
        step_type=spec["type"],
        step_index=index,
    )
    result = StepRecord(
        index=index,
        type=spec["type"],
        status=StepResult.Status.FAILED,
        output=None,
        error=error,
        started_at=started_at,
        duration_ms=(timezone.now() - started_at).total_seconds() * 1000,
    )
    outcome = attempt_failed(claim, result, error)
    logger.warning(
        "job %s attempt %d: step %d abandoned past its deadline: %s",
        claim.job_id,
        claim.attempt,
        index,
        observe.outcome_label(outcome),
    )


def run_step(
    spec: dict[str, Any],
    ctx: StepContext,
    *,
    abandon: Callable[[float], None] | None = None,
) -> tuple[Any, AttemptError | None]:
    """Run one step; return (output, None) or (None, error). Unexpected exceptions are transient.

    StepStopped (the job was cancelled while the step ran) propagates: it is not a failure.
    ``abandon(seconds)`` ends the attempt when the step, off the main thread, does not stop at
    its deadline (executions/timeouts.py).
    """
    step_type = get_step(spec["type"])
    try:
        if step_type is None:
            raise PermanentStepError(
                f"step type {spec['type']!r} is no longer registered", code="STEP.UNKNOWN_TYPE"
            )
        output = run_within(
            ctx.timeout,
            partial(step_type.run, spec.get("params", {}), ctx),
            stop=ctx.stop,
            abandon=None if abandon is None else partial(abandon, ctx.timeout),
        )
        try:
            # allow_nan=False: NaN and infinities are not JSON, and PostgreSQL refuses them.
            dumped = json.dumps(output, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PermanentStepError(
                f"step returned an output that is not JSON: {exc}", code="STEP.OUTPUT_NOT_JSON"
            ) from exc
        # json.dumps writes NUL as an escape, surrogates as they are: either means "look closer".
        if ("\\u0000" in dumped or UNSTORABLE.search(dumped)) and any(unstorable_paths(output)):
            raise PermanentStepError(
                "step returned text with a NUL character or a lone surrogate, which PostgreSQL"
                " cannot store",
                code="STEP.OUTPUT_NOT_STORABLE",
            )
    except StepStopped:
        raise
    except Exception as exc:
        return None, AttemptError.from_exception(
            exc, step_type=spec["type"], step_index=ctx.step_index
        )
    return output, None
