"""Every transition of jobs.lifecycle, run through the service that makes it, from every state.

A transition happens exactly from its ``sources``; from any other state the service changes
nothing (and says so: a False, an empty list, or the domain error the API translates).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from executions.models import Execution
from executions.services import (
    Claim,
    StepRecord,
    attempt_succeeded,
    execution_claim,
    job_to_failed,
    job_to_retrying,
)
from jobplatform.errors import Conflict
from jobs import lifecycle
from jobs.models import Job
from jobs.retry import RetryPolicy
from jobs.services import (
    job_cancel,
    job_release_due,
    job_release_lost,
    job_reschedule,
    job_retry,
    job_unrelease,
)
from jobs.steps import AttemptError
from tests.jobs.factories import JobFactory

ALL = sorted(Job.Status)
AN_HOUR_AGO = timedelta(hours=1)
ERROR = AttemptError(type="TransientStepError", code="STEP.FAILED", message="x", permanent=False)


def test_every_state_is_either_active_or_terminal():
    assert set(Job.Status) == lifecycle.ACTIVE | lifecycle.TERMINAL
    assert not lifecycle.ACTIVE & lifecycle.TERMINAL


def test_every_transition_starts_from_known_states_and_never_leaves_a_terminal_one_by_itself():
    for transition in lifecycle.TRANSITIONS:
        assert transition.sources <= set(Job.Status), transition.name
        if transition not in (lifecycle.MANUAL_RETRY, lifecycle.JOB_RETRY):
            assert not transition.sources & lifecycle.TERMINAL, transition.name


def test_sql_literals_accept_only_plain_states():
    assert lifecycle.sql_in(lifecycle.RELEASABLE) == "('pending', 'retrying')"
    with pytest.raises(ValueError):
        lifecycle.sql("pending') OR ('1' = '1")


def _attempt(job: Job) -> Claim:
    """A claim of ``job``'s current attempt (attempt 1), as the worker would hold it."""
    execution = Execution.objects.create(
        job=job, attempt=1, status=Execution.Status.RUNNING, started_at=timezone.now()
    )
    return Claim(
        job_id=job.id,
        attempt=1,
        execution_id=execution.id,
        started_at=execution.started_at,
        steps=job.steps,
        input=job.input,
        next_step=0,
        step_outputs=[],
        policy=RetryPolicy(max_retries=3, backoff=1, backoff_max=1),
        timeout=60,
    )


def _succeed(job: Job) -> bool:
    claim = _attempt(job)
    step = StepRecord(
        index=0,
        type="log",
        status="succeeded",
        output=None,
        error=None,
        started_at=timezone.now(),
        duration_ms=1.0,
    )
    return attempt_succeeded(claim, step, [None]).status == Execution.Status.SUCCEEDED


def _retry(job: Job) -> bool:
    _attempt(job)
    with connection.cursor() as cursor:
        return job_to_retrying(
            cursor, job_id=job.id, attempt=1, retry_at=timezone.now(), error=ERROR
        )


def _fail(job: Job) -> bool:
    _attempt(job)
    with connection.cursor() as cursor:
        return job_to_failed(cursor, job_id=job.id, attempt=1, error=ERROR)


def _cancel(job: Job) -> bool:
    try:
        job_cancel(job_id=job.id, actor=None)
    except Conflict:
        return False
    return job.status != Job.Status.CANCELLED  # cancelling a cancelled job changes nothing


def _reschedule(job: Job) -> bool:
    try:
        job_reschedule(job_id=job.id, run_at=timezone.now() + AN_HOUR_AGO)
    except Conflict:
        return False
    return True


# transition -> (how a job in some state is prepared, the service call; True if it moved it)
CASES: dict[lifecycle.Transition, tuple[dict[str, Any], Callable[[Job], bool]]] = {
    lifecycle.RELEASE: (
        {"next_attempt_at": timezone.now() - AN_HOUR_AGO},
        lambda job: bool(job_release_due(limit=10).jobs),
    ),
    lifecycle.UNRELEASE: ({}, lambda job: job_unrelease(job_ids=[job.id]) == 1),
    lifecycle.REDELIVER_QUEUED: (
        {"queued_at": timezone.now() - AN_HOUR_AGO},
        lambda job: bool(job_release_lost(older_than=60, limit=10)),
    ),
    lifecycle.CLAIM: (
        {},
        lambda job: (
            execution_claim(job_id=job.id, attempt=1, delivery_id="d", worker="w") is not None
        ),
    ),
    lifecycle.SUCCEED: ({"attempts": 1}, _succeed),
    lifecycle.RETRY: ({"attempts": 1}, _retry),
    lifecycle.FAIL: ({"attempts": 1}, _fail),
    lifecycle.CANCEL: ({}, _cancel),
    lifecycle.RESCHEDULE: ({}, _reschedule),
    lifecycle.MANUAL_RETRY: ({"attempts": 1}, lambda job: job_retry(job_ids=[job.id]) != []),
    lifecycle.JOB_RETRY: (
        {"attempts": 1},
        lambda job: job_retry(job_ids=[job.id], transition=lifecycle.JOB_RETRY) != [],
    ),
}


def test_every_transition_has_a_case():
    assert set(CASES) == set(lifecycle.TRANSITIONS)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ALL)
@pytest.mark.parametrize("transition", lifecycle.TRANSITIONS, ids=lambda t: t.name)
def test_a_transition_moves_a_job_exactly_from_its_sources(transition, status):
    fields, run = CASES[transition]
    job = JobFactory(status=status, run_at=timezone.now() - AN_HOUR_AGO, **fields)
    allowed = status in transition.sources
    try:
        with transaction.atomic():
            moved = run(job)
    except IntegrityError:  # a second running attempt: the database refuses it too
        moved = False
    assert moved is allowed, (transition.name, status)
    job.refresh_from_db()
    if allowed:
        assert job.status == transition.target
    else:
        assert job.status == status


@pytest.mark.django_db
def test_the_database_refuses_a_state_the_lifecycle_does_not_know():
    job = JobFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(id=job.id).update(status="paused")


@pytest.mark.django_db
def test_release_leaves_future_jobs_pending_and_takes_the_oldest_first(user):
    now = timezone.now()
    future = JobFactory(owner=user, run_at=now + timedelta(hours=1))
    newer = JobFactory(owner=user, run_at=now - timedelta(seconds=1))
    older = JobFactory(owner=user, run_at=now - timedelta(seconds=10))
    assert [r.id for r in job_release_due(limit=1).jobs] == [older.id]
    assert [r.id for r in job_release_due(limit=10).jobs] == [newer.id]
    future.refresh_from_db()
    assert future.status == Job.Status.PENDING


def test_the_models_indexes_name_the_lifecycles_sets():
    """jobs.models cannot import the lifecycle (it imports the models): its partial indexes
    spell the sets out, and must spell them as the lifecycle does."""
    from jobs import models

    assert set(models._WAITING) == lifecycle.RELEASABLE
    assert set(models._IN_FLIGHT) == lifecycle.IN_FLIGHT
