"""Retry and dismissal of one dead letter: the transitions, their refusals and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deadletter.models import DeadLetter
from deadletter.services import (
    DISMISSABLE,
    RETRYABLE,
    RetryOverrides,
    dead_letter_dismiss,
    dead_letter_retry,
)
from jobplatform.errors import Conflict, InvalidInput
from jobs.models import Job
from jobs.services import DISPATCH_CHANNEL, job_retry
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory

pytestmark = pytest.mark.django_db

STATES = sorted(DeadLetter.State)


def code_of(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.code


def test_a_retry_sends_the_job_back_to_the_queue_with_its_history(admin):
    old = timezone.now() - timedelta(hours=1)
    job = FailedJobFactory(
        attempts=4, next_step=1, step_outputs=[{"a": 1}], version=9, run_at=old, finished_at=old
    )
    dead = DeadLetterFactory(job=job)
    dead_letter_retry(dead_letter_id=dead.id, actor=admin, note="the API is back")
    job.refresh_from_db()
    dead.refresh_from_db()
    assert job.status == Job.Status.PENDING
    assert job.run_at > old and job.finished_at is None
    # Numbering continues (the next attempt is 5) with a fresh budget counted from here.
    assert (job.attempts, job.retry_base) == (4, 4)
    assert (job.next_step, job.step_outputs) == (1, [{"a": 1}])  # resumes at the failed step
    assert job.version == 10
    assert (dead.state, dead.resolved_by, dead.note) == ("retried", admin, "the API is back")
    assert dead.resolved_at is not None
    [action] = dead.actions.all()
    assert (action.kind, action.actor, action.actor_name, action.note) == (
        "retry",
        admin,
        admin.username,
        "the API is back",
    )
    assert action.details == {"attempts_before": 4}


def test_overrides_change_the_job_and_are_recorded_with_before_and_after(admin):
    job = FailedJobFactory(
        steps=[{"type": "log", "params": {"message": str(i)}} for i in range(4)],
        input={"v": 1},
        max_retries=1,
        next_step=3,
        step_outputs=[{"o": 0}, {"o": 1}, {"o": 2}],
    )
    dead = DeadLetterFactory(job=job)
    dead_letter_retry(
        dead_letter_id=dead.id,
        actor=admin,
        note="fixed the input",
        overrides=RetryOverrides(max_retries=5, input={"v": 2}, from_step=1),
    )
    job.refresh_from_db()
    assert (job.max_retries, job.input, job.next_step) == (5, {"v": 2}, 1)
    assert job.step_outputs == [{"o": 0}]  # step 0's output is reused, steps 1.. run again
    edit, retry = dead.actions.all()
    assert (edit.kind, retry.kind) == ("edit", "retry")
    assert edit.note == retry.note == "fixed the input"
    assert edit.details == {
        "max_retries": {"from": 1, "to": 5},
        "input": {"from": {"v": 1}, "to": {"v": 2}},
        "from_step": {"from": 3, "to": 1},
    }
    # The snapshot keeps the job as it was when it died.
    dead.refresh_from_db()
    assert dead.input == {"v": 1}


def test_retry_from_step_zero_runs_everything_again(admin):
    job = FailedJobFactory(next_step=2, step_outputs=[1, 2])
    dead = DeadLetterFactory(job=job)
    dead_letter_retry(dead_letter_id=dead.id, actor=admin, overrides=RetryOverrides(from_step=0))
    job.refresh_from_db()
    assert (job.next_step, job.step_outputs) == (0, [])


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        (RetryOverrides(from_step=2), "DEADLETTER.INVALID_FROM_STEP"),  # past the failed step
        (RetryOverrides(from_step=-1), "JOBS.INVALID_FROM_STEP"),
        (RetryOverrides(max_retries=-1), "JOBS.INVALID_RETRY_POLICY"),
        (RetryOverrides(max_retries=10_000), "JOBS.INVALID_RETRY_POLICY"),
        (RetryOverrides(input={"x": "y" * 70_000}), "JOBS.INPUT_TOO_LARGE"),
    ],
)
def test_an_invalid_override_changes_nothing(admin, overrides, code):
    job = FailedJobFactory(next_step=1, step_outputs=[1])
    dead = DeadLetterFactory(job=job)
    with pytest.raises(InvalidInput) as excinfo:
        dead_letter_retry(dead_letter_id=dead.id, actor=admin, overrides=overrides)
    assert code_of(excinfo) == code
    dead.refresh_from_db()
    job.refresh_from_db()
    assert (dead.state, job.status, dead.actions.count()) == ("open", "failed", 0)


def test_retrying_twice_is_a_conflict_that_changes_nothing(admin):
    dead = DeadLetterFactory()
    dead_letter_retry(dead_letter_id=dead.id, actor=admin)
    with pytest.raises(Conflict) as excinfo:
        dead_letter_retry(dead_letter_id=dead.id, actor=admin)
    assert code_of(excinfo) == "DEADLETTER.JOB_NOT_FAILED"
    assert excinfo.value.details == {"job_status": "pending", "state": "retried"}
    assert dead.actions.count() == 1


@pytest.mark.parametrize("status", sorted(set(Job.Status) - {Job.Status.FAILED}))
def test_an_open_entry_of_a_job_that_is_not_failed_is_not_retried(admin, status):
    dead = DeadLetterFactory(job=FailedJobFactory(status=status))
    with pytest.raises(Conflict) as excinfo:
        dead_letter_retry(dead_letter_id=dead.id, actor=admin)
    assert code_of(excinfo) == "DEADLETTER.JOB_NOT_FAILED"
    dead.refresh_from_db()
    assert (dead.state, dead.resolved_at) == ("open", None)  # rolled back with the refusal


def test_an_old_entry_of_a_job_that_died_again_points_to_the_current_one(admin):
    job = FailedJobFactory()
    old = DeadLetterFactory(job=job, state="retried", resolved_at=timezone.now())
    current = DeadLetterFactory(job=job)
    with pytest.raises(Conflict) as excinfo:
        dead_letter_retry(dead_letter_id=old.id, actor=admin)
    assert code_of(excinfo) == "DEADLETTER.ALREADY_RETRIED"
    assert excinfo.value.details["current_dead_letter"] == current.id


@pytest.mark.parametrize("state", STATES)
def test_retry_from_each_state(admin, state):
    resolved = None if state == "open" else timezone.now()
    dead = DeadLetterFactory(state=state, resolved_at=resolved)
    if state in RETRYABLE:
        dead_letter_retry(dead_letter_id=dead.id, actor=admin)
        dead.refresh_from_db()
        assert dead.state == "retried"
    else:
        with pytest.raises(Conflict):
            dead_letter_retry(dead_letter_id=dead.id, actor=admin)


@pytest.mark.parametrize("state", STATES)
def test_dismiss_from_each_state(admin, state):
    resolved = None if state == "open" else timezone.now()
    dead = DeadLetterFactory(state=state, resolved_at=resolved)
    if state in DISMISSABLE:
        dead_letter_dismiss(dead_letter_id=dead.id, actor=admin, note="known outage")
        dead.refresh_from_db()
        assert (dead.state, dead.note, dead.resolved_by) == ("dismissed", "known outage", admin)
        [action] = dead.actions.all()
        assert (action.kind, action.note) == ("dismiss", "known outage")
    else:
        with pytest.raises(Conflict) as excinfo:
            dead_letter_dismiss(dead_letter_id=dead.id, actor=admin)
        expected = {"dismissed": "DEADLETTER.ALREADY_DISMISSED", "retried": "ALREADY_RETRIED"}
        assert code_of(excinfo).endswith(expected[state])
    dead.job.refresh_from_db()
    assert dead.job.status == Job.Status.FAILED  # a dismissal leaves the job as it is


@pytest.mark.parametrize("status", sorted(Job.Status))
def test_job_retry_moves_only_failed_jobs(status):
    job = FailedJobFactory(status=status)
    assert job_retry(job_ids=[job.id]) == ([job.id] if status == Job.Status.FAILED else [])


def test_job_retry_from_a_step_skips_jobs_that_did_not_get_that_far():
    far = FailedJobFactory(next_step=2, step_outputs=[1, 2])
    near = FailedJobFactory(next_step=0)
    assert job_retry(job_ids=[far.id, near.id], from_step=1) == [far.id]
    far.refresh_from_db()
    assert (far.next_step, far.step_outputs) == (1, [1])


@pytest.mark.django_db(transaction=True)
def test_a_retry_wakes_the_dispatchers_when_it_commits(admin):
    dead = DeadLetterFactory()
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    ) as conn:
        conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
        with transaction.atomic():
            dead_letter_retry(dead_letter_id=dead.id, actor=admin)
            assert list(conn.notifies(timeout=0.2)) == []  # not before commit
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
