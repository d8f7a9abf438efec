"""The in-process Python API (jobs.inprocess): Django code submits, reads and cancels jobs
without HTTP, under the API's rules."""

from __future__ import annotations

import pytest
from django.db import transaction

from jobplatform.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from jobs import inprocess as jobs
from jobs.models import Job
from tests.jobs.factories import JobFactory
from tests.support import wait_for

LOG = [{"type": "log", "params": {"message": "from Django code"}}]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_job_submitted_in_process_runs_on_a_real_worker(platform, user):
    job = jobs.submit(owner=user, name="in-process", steps=LOG, priority=7)
    assert (job.status, job.priority, job.owner) == ("pending", 7, user)
    done = wait_for(
        lambda: (j := jobs.get(job_id=job.id)).status == "succeeded" and j, what="the job"
    )
    assert done.executions.get().status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_submission_in_a_rolled_back_transaction_leaves_nothing(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.submit(owner=user, name="rolled back", steps=LOG)
        raise RuntimeError
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_api_rules_and_codes_apply(user):
    with pytest.raises(InvalidInput) as error:
        jobs.submit(owner=user, name="x", steps=[{"type": "nope"}])
    assert error.value.code == "JOBS.UNKNOWN_STEP_TYPE"
    first = jobs.submit(owner=user, name="x", steps=LOG, idempotency_key="k")
    assert jobs.submit(owner=user, name="x", steps=LOG, idempotency_key="k").id == first.id
    with pytest.raises(Conflict):
        jobs.submit(owner=user, name="y", steps=LOG, idempotency_key="k")
    ids = jobs.submit_many(owner=user, jobs=[{"name": "a", "steps": LOG}] * 3)
    assert Job.objects.filter(id__in=ids, status="pending").count() == 3
    keyed = jobs.submit(owner=user, name="k", steps=LOG, concurrency_key="db", max_concurrency=2)
    assert (keyed.concurrency_key, keyed.max_concurrency) == ("db", 2)
    assert (
        jobs.submit(owner=user, name="r", steps=LOG, rate_limit="partner").rate_limit == "partner"
    )


@pytest.mark.django_db
def test_admission_control_applies(user, settings):
    settings.JOBPLATFORM_ADMISSION_RECOUNT = 0
    settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = 2
    jobs.submit(owner=user, name="a", steps=LOG)
    with pytest.raises(TooManyRequests) as error:
        jobs.submit_many(owner=user, jobs=[{"name": "b", "steps": LOG}] * 2)
    assert (error.value.code, error.value.retry_after) == (
        "JOBS.TOO_MANY_UNFINISHED",
        settings.JOBPLATFORM_ADMISSION_RETRY_AFTER,
    )
    assert Job.objects.filter(owner=user).count() == 1


@pytest.mark.django_db
def test_get_and_cancel_see_only_what_the_user_may(user):
    mine, theirs = JobFactory(owner=user), JobFactory()
    assert jobs.cancel(job_id=mine.id, user=user).status == "cancelled"
    with pytest.raises(NotFound):
        jobs.get(job_id=theirs.id, user=user)
    assert jobs.get(job_id=theirs.id).id == theirs.id  # trusted code sees every job
    finished = JobFactory(owner=user, status=Job.Status.SUCCEEDED)
    with pytest.raises(Conflict) as error:
        jobs.cancel(job_id=finished.id)
    assert error.value.code == "JOBS.NOT_CANCELLABLE"
