"""Retention: old finished jobs go, with everything recorded about them; nothing else does."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from deadletter.models import DeadLetter, DeadLetterAction
from executions.models import Execution, StepResult
from executions.retention import RetentionPolicy, job_purge_finished
from jobplatform.models import AuditEvent
from jobs.callbacks.models import CallbackDelivery
from jobs.models import Job, ScheduleFiring
from jobs.services import jobs_cancel
from tests.deadletter.factories import DeadLetterFactory
from tests.jobs.factories import JobFactory
from tests.jobs.schedules.conftest import make_schedule
from tests.support import wait_for

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def finished(days_ago: float, *, status: str = Job.Status.SUCCEEDED, **fields):
    """A job that finished ``days_ago`` days ago, with one attempt and one step result."""
    at = timezone.now() - timedelta(days=days_ago)
    job: Any = JobFactory(status=status, attempts=1, created_at=at, finished_at=at, **fields)
    execution = Execution.objects.create(
        job_id=job.id, attempt=1, status="succeeded", started_at=at, finished_at=at
    )
    StepResult.objects.create(
        execution=execution, index=0, type="log", status="succeeded", started_at=at, duration_ms=1
    )
    return job


def exists(job: Job) -> bool:
    return Job.objects.filter(id=job.id).exists()


def test_old_finished_jobs_go_with_their_attempts_steps_and_dead_letters_not_the_audit_trail():
    old = [finished(40, status=s) for s in (Job.Status.SUCCEEDED, Job.Status.CANCELLED)]
    failed = finished(40, status=Job.Status.FAILED)
    CallbackDelivery.objects.create(
        job=failed, delivery_id=uuid.uuid4(), target="job", url="https://example.com/",
        event="job.failed", attempt=1, state="delivered",
    )  # fmt: skip
    closed = DeadLetterFactory(job=failed, state="dismissed", resolved_at=timezone.now())
    DeadLetterAction.objects.create(dead_letter=closed, kind="dismiss")
    recent = finished(10)
    cancelled = JobFactory(status=Job.Status.QUEUED)
    jobs_cancel(job_ids=[cancelled.id], actor=None, note="overlap")
    long_ago = timezone.now() - 40 * DAY
    Job.objects.filter(id=cancelled.id).update(created_at=long_ago, finished_at=long_ago)

    assert job_purge_finished(policy=RetentionPolicy(days=30), batch_size=2) == 4
    assert not any(exists(j) for j in [*old, failed, cancelled])
    assert exists(recent)
    assert Execution.objects.filter(job__in=[*old, failed]).count() == 0
    assert StepResult.objects.count() == 1  # the recent job's
    assert not DeadLetter.objects.exists() and not DeadLetterAction.objects.exists()
    assert not CallbackDelivery.objects.exists()
    # The audit trail outlives the job: who cancelled what is kept after the rows are gone.
    assert AuditEvent.objects.filter(subject=f"job {cancelled.id}").count() == 1
    assert job_purge_finished(policy=RetentionPolicy(days=30)) == 0


@pytest.mark.parametrize(
    "status", [Job.Status.PENDING, Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.RETRYING]
)
def test_unfinished_jobs_are_kept_however_old(status):
    job = JobFactory(status=status, created_at=timezone.now() - 90 * DAY)
    assert job_purge_finished(policy=RetentionPolicy(days=30)) == 0
    assert exists(job)


def test_a_failed_job_with_an_open_dead_letter_is_kept():
    dead = DeadLetterFactory(job=finished(90, status=Job.Status.FAILED))
    assert job_purge_finished(policy=RetentionPolicy(days=30)) == 0
    assert DeadLetter.objects.filter(id=dead.id, state="open").exists()


def test_a_schedules_latest_run_is_kept_and_its_firings_lose_only_the_link(user):
    schedule = make_schedule(user, now=timezone.now())
    older, latest = finished(60, schedule=schedule), finished(50, schedule=schedule)
    firing = ScheduleFiring.objects.create(
        schedule=schedule, scheduled_for=older.created_at, fired_at=older.created_at,
        outcome="created", job=older,
    )  # fmt: skip
    assert job_purge_finished(policy=RetentionPolicy(days=30)) == 1
    assert not exists(older) and exists(latest)
    firing.refresh_from_db()
    assert firing.job_id is None


def test_retention_per_queue_and_forever():
    reports, bulk, default = finished(40, queue="reports"), finished(3, queue="bulk"), finished(40)
    policy = RetentionPolicy(days=30, by_queue={"reports": 0, "bulk": 2})
    assert job_purge_finished(policy=policy) == 2
    assert exists(reports) and not exists(bulk) and not exists(default)
    assert job_purge_finished(policy=RetentionPolicy(days=0)) == 0  # forever: nothing at all


def test_a_dispatcher_purges_only_the_queues_it_serves():
    mine, theirs = finished(40, queue="mine"), finished(40, queue="theirs")
    assert job_purge_finished(policy=RetentionPolicy(days=30), queues=["mine"]) == 1
    assert not exists(mine) and exists(theirs)


def test_the_budget_leaves_the_rest_for_the_next_run():
    for _ in range(5):
        finished(40)
    assert job_purge_finished(policy=RetentionPolicy(days=30), batch_size=2, budget=0) == 2
    assert job_purge_finished(policy=RetentionPolicy(days=30), batch_size=2) == 3


def test_purge_finished_purges_now_with_the_days_given():
    older, newer = finished(20), finished(5)
    out = StringIO()
    call_command("purge_finished", "--days", "10", "--batch", "1", stdout=out)
    assert out.getvalue() == "deleted 1 finished jobs\n"
    assert not exists(older) and exists(newer)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_dispatcher_purges_as_a_chore(platform):
    old, recent = finished(40), finished(1)
    wait_for(lambda: not exists(old), timeout=30, what="the dispatcher's retention chore")
    assert exists(recent)
