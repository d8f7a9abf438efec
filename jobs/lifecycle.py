"""The job lifecycle: every transition, the states it may start from and the state it ends in.

This module is the one source of job states in code and SQL (DESIGN §2). Every transition in
``jobs.services`` and ``executions.services`` is one conditional UPDATE whose WHERE clause names a
``Transition``'s sources; the row count says whether it happened. SQL is written with
:func:`sql_in` and :func:`sql` so that no status is spelled twice, and the statements keep
literal states (not parameters), which the planner needs to use the partial indexes on status.
``tests/jobs/test_lifecycle.py`` runs every transition from every state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from jobs.models import Job, JobStatus

S = Job.Status

# The dispatcher releases a due job into the broker: a new one, or one whose retry is due. Both go
# through the same release, so flow control (caps, keys, fair share) holds for retries too.
RELEASABLE = frozenset({S.PENDING, S.RETRYING})
# A worker may start an attempt only of a released job: its message names the attempt.
CLAIMABLE = frozenset({S.QUEUED})
# Jobs whose message may have been lost: published again once overdue.
REDELIVERABLE = frozenset({S.QUEUED})
# Released and not finished: what a queue's in-flight cap and a concurrency key count.
IN_FLIGHT = frozenset({S.QUEUED, S.RUNNING})
# A client may move run_at of a job that has not been released yet (PATCH /jobs/{id}/).
RESCHEDULABLE = frozenset({S.PENDING})
# A client may cancel anything that has not finished.
CANCELLABLE = frozenset({S.PENDING, S.QUEUED, S.RETRYING, S.RUNNING})
# An attempt in progress: the only state its step results, retry, failure or success start from.
IN_ATTEMPT = frozenset({S.RUNNING})
# A dead letter's retry starts only from here (its job failed).
MANUALLY_RETRYABLE = frozenset({S.FAILED})
# A job's own retry action (POST /api/v1/jobs/{id}/retry/) also brings back a cancelled job.
JOB_RETRYABLE = frozenset({S.FAILED, S.CANCELLED})
# Only an explicit retry (MANUAL_RETRY, JOB_RETRY) moves a job out of these.
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
ACTIVE = frozenset(set(S) - TERMINAL)


@dataclass(frozen=True)
class Transition:
    """A named move between states: from any of ``sources`` to ``target``."""

    name: str
    sources: frozenset[JobStatus]
    target: JobStatus
    by: str  # who makes it, for the reader


RELEASE = Transition("release", RELEASABLE, S.QUEUED, "dispatcher: a due job, within its limits")
UNRELEASE = Transition(
    "unrelease", frozenset({S.QUEUED}), S.PENDING, "dispatcher: publish failed; operator: pause"
)
REDELIVER_QUEUED = Transition("redeliver", REDELIVERABLE, S.QUEUED, "dispatcher: a lost message")
CLAIM = Transition("claim", CLAIMABLE, S.RUNNING, "worker: an attempt starts")
SUCCEED = Transition("succeed", IN_ATTEMPT, S.SUCCEEDED, "worker: every step succeeded")
RETRY = Transition("retry", IN_ATTEMPT, S.RETRYING, "worker or reaper: a transient failure")
FAIL = Transition("fail", IN_ATTEMPT, S.FAILED, "worker or reaper: no attempt left")
CANCEL = Transition("cancel", CANCELLABLE, S.CANCELLED, "client or operator")
RESCHEDULE = Transition("reschedule", RESCHEDULABLE, S.PENDING, "client: a new run_at")
MANUAL_RETRY = Transition("manual_retry", MANUALLY_RETRYABLE, S.PENDING, "operator: dead letter")
JOB_RETRY = Transition("job_retry", JOB_RETRYABLE, S.PENDING, "client or operator: a job's retry")

TRANSITIONS = (
    RELEASE,
    UNRELEASE,
    REDELIVER_QUEUED,
    CLAIM,
    SUCCEED,
    RETRY,
    FAIL,
    CANCEL,
    RESCHEDULE,
    MANUAL_RETRY,
    JOB_RETRY,
)


def sql(state: str) -> str:
    """A state as an SQL literal: ``'running'``."""
    if not state.isidentifier():  # a state is a plain word; nothing else is ever interpolated
        raise ValueError(f"not a state: {state!r}")
    return f"'{state}'"


def sql_in(states: Iterable[str]) -> str:
    """A set of states as an SQL list for ``status IN …``: ``('queued', 'retrying')``."""
    return "(" + ", ".join(sql(s) for s in sorted(states)) + ")"
