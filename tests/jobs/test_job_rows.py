"""The two ways a job row is made give the same row: job_values in Python (submissions) and
job_insert_from_templates in SQL (a schedule sweep's thousands of ticks)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from jobs.models import Job
from jobs.services import JobSpec, TemplatedJob, job_insert, job_insert_from_templates, job_values
from tests.jobs.schedules.conftest import make_schedule
from tests.jobs.test_dispatcher import listener

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 4, 10, 0, 1, tzinfo=UTC)
TICK = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
# Per row, not from the template: compared apart.
PER_ROW = {"id", "trace_id", "created_at", "updated_at", "run_at", "schedule", "scheduled_for"}

SPECS = [
    JobSpec(name="minimal", steps=[{"type": "log", "params": {"message": "hi"}}]),
    JobSpec(
        name="everything",
        steps=[
            {"type": "sleep", "params": {"seconds": 0}, "timeout": 5},
            {"type": "sleep", "params": {"seconds": 0}, "timeout": None},  # dropped, as null
            {"type": "fail"},  # no params: {}
        ],
        input={"nested": [1, "two", None], "n": 1.5},
        queue="dispatch-probe",
        priority=9,
        max_retries=0,
        retry_backoff=0.5,
        retry_backoff_max=7,
        retry_jitter=False,
        timeout=12,
    ),
]


def template(spec: JobSpec) -> str:
    """A schedule's job_template: the spec without run_at, as JSON."""
    return json.dumps({k: v for k, v in asdict(spec).items() if k != "run_at"})


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_a_job_from_a_template_is_the_row_job_values_makes(user, spec):
    schedule = make_schedule(user, now=NOW)
    [from_values] = job_insert([job_values(owner_id=user.pk, spec=replace(spec, run_at=TICK))])
    templated = TemplatedJob(
        id=uuid.uuid4(), owner_id=user.pk, template=0, run_at=TICK,
        schedule_id=schedule.id, scheduled_for=TICK,
    )  # fmt: skip
    made = job_insert_from_templates(templates=[template(spec)], jobs=[templated], now=NOW)
    assert made == {templated.id}
    expected = model_to_dict(Job.objects.get(id=from_values), exclude=PER_ROW)
    job = Job.objects.get(id=templated.id)
    assert model_to_dict(job, exclude=PER_ROW) == expected
    assert (job.run_at, job.schedule_id, job.scheduled_for) == (TICK, schedule.id, TICK)
    assert job.created_at == job.updated_at == NOW
    assert len(job.trace_id) == 32 and int(job.trace_id, 16) >= 0


def test_a_template_missing_keys_takes_the_jobspec_defaults(user):
    # As JobSpec(**template) would: keys a template lacks take their defaults.
    bare = json.dumps({"name": "bare", "steps": [{"type": "log", "params": {"message": "x"}}]})
    job_id = uuid.uuid4()
    job_insert_from_templates(
        templates=[bare], jobs=[TemplatedJob(id=job_id, owner_id=user.pk, template=0, run_at=TICK)]
    )
    [from_values] = job_insert([job_values(owner_id=user.pk, spec=SPECS[0])])
    exclude = PER_ROW | {"name", "steps"}
    assert model_to_dict(Job.objects.get(id=job_id), exclude=exclude) == model_to_dict(
        Job.objects.get(id=from_values), exclude=exclude
    )


def test_many_jobs_of_a_few_templates_in_one_statement_each_with_its_own_ids(user):
    schedules = [make_schedule(user, now=NOW) for _ in range(3)]
    jobs = [
        TemplatedJob(
            id=uuid.uuid4(),
            owner_id=user.pk,
            template=n % 2,
            run_at=TICK,
            schedule_id=schedules[n % 3].id,
            scheduled_for=TICK.replace(minute=n),
        )
        for n in range(12)
    ]
    made = job_insert_from_templates(templates=[template(s) for s in SPECS], jobs=jobs)
    assert made == {j.id for j in jobs}
    rows = Job.objects.filter(id__in=made)
    assert sorted(rows.values_list("name", flat=True)) == ["everything"] * 6 + ["minimal"] * 6
    assert len(set(rows.values_list("trace_id", flat=True))) == 12


def test_a_tick_that_has_its_job_is_skipped_and_not_returned(user):
    schedule = make_schedule(user, now=NOW)
    first, again = (
        TemplatedJob(
            id=uuid.uuid4(),
            owner_id=user.pk,
            template=0,
            run_at=TICK,
            schedule_id=schedule.id,
            scheduled_for=TICK,
        )
        for _ in range(2)
    )
    templates = [template(SPECS[0])]
    assert job_insert_from_templates(templates=templates, jobs=[first]) == {first.id}
    assert job_insert_from_templates(templates=templates, jobs=[again]) == set()
    assert list(Job.objects.filter(schedule=schedule).values_list("id", flat=True)) == [first.id]


@pytest.mark.django_db(transaction=True)
def test_the_dispatchers_are_woken_when_the_insert_commits(user):
    job = TemplatedJob(id=uuid.uuid4(), owner_id=user.pk, template=0, run_at=TICK)
    with listener() as conn:
        with transaction.atomic():
            job_insert_from_templates(templates=[template(SPECS[0])], jobs=[job])
            assert list(conn.notifies(timeout=0.2)) == []
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
