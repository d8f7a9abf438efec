"""The worker's hot statements are prepared once per connection, and work unprepared too."""

from __future__ import annotations

import pytest
from django.db import connection

from executions.models import Execution
from executions.pipeline import execution_run, executions_run
from executions.services.claim import ClaimRequest
from jobs.models import Job
from tests.jobs.factories import JobFactory
from tests.support import executions_of_prepared

pytestmark = pytest.mark.django_db

TWO_STEPS = [
    {"type": "log", "params": {"message": "a"}},
    {"type": "sleep", "params": {"seconds": 0}},
]


def run_queued_job(user) -> Job:
    job = JobFactory.create(owner=user, steps=TWO_STEPS, status=Job.Status.QUEUED)
    outcome = execution_run(job_id=job.id, attempt=1, delivery_id="d", worker="w")
    assert outcome.status == Execution.Status.SUCCEEDED
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"slept": 0}
    assert job.executions.get().step_results.count() == 2
    return job


HOT = {
    "claim": "WITH claimed AS",
    "step done": "SET next_step",
    "success": "SET status = 'succeeded'",
}


def test_claim_step_and_success_run_as_prepared_statements(user):
    run_queued_job(user)  # prepares them, if this connection had not yet
    before = {name: executions_of_prepared(sql) for name, sql in HOT.items()}
    run_queued_job(user)
    run_queued_job(user)
    after = {name: executions_of_prepared(sql) for name, sql in HOT.items()}
    assert {name: after[name] - before[name] for name in HOT} == {
        "claim": 2,
        "step done": 2,
        "success": 2,
    }


def test_without_prepared_statements_the_hot_path_runs_unprepared(user):
    """DATABASE_PREPARED_STATEMENTS=0 (a pooler that cannot keep them) sets this to None."""
    connection.ensure_connection()
    pg = connection.connection
    saved = pg.prepare_threshold
    pg.prepare_threshold = None
    try:
        before = {name: executions_of_prepared(sql) for name, sql in HOT.items()}
        run_queued_job(user)
        after = {name: executions_of_prepared(sql) for name, sql in HOT.items()}
    finally:
        pg.prepare_threshold = saved
    assert after == before


def test_in_a_batch_each_success_claims_the_next_job_in_the_same_statement(user):
    jobs = JobFactory.create_batch(3, owner=user, steps=TWO_STEPS, status=Job.Status.QUEUED)
    Job.objects.filter(id=jobs[1].id).update(status=Job.Status.CANCELLED)  # before its turn
    before = executions_of_prepared("finished AS")
    requests = [ClaimRequest(job.id, 1, "d", "w") for job in jobs]
    outcomes = [outcome.status for _, outcome in executions_run(requests)]
    assert outcomes == ["succeeded", "duplicate", "succeeded"]
    # The first success also tried the claim of the second job (cancelled: nothing to claim);
    # the third was claimed on its own, and its success, the batch's last, claims nothing.
    assert executions_of_prepared("finished AS") - before == 1
    statuses = dict(Job.objects.filter(id__in=[j.id for j in jobs]).values_list("id", "status"))
    assert [statuses[j.id] for j in jobs] == ["succeeded", "cancelled", "succeeded"]
    assert Execution.objects.filter(job_id__in=[j.id for j in jobs]).count() == 2
