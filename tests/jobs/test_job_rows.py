"""The two ways a job row is made give the same row: job_values in Python (submissions) and
job_insert_ticks in SQL, from a schedule's job template (a sweep's thousands of ticks)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from jobs.models import Job, Schedule
from jobs.services import JobSpec, job_insert, job_insert_ticks, job_values
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
            {"type": "sleep", "params": {"seconds": 0}, "timeout": None},  # stored without
            {"type": "log", "params": {"message": "x"}},
            # Its host is read from the URL in Python (Job.hosts), copied by ticks in SQL.
            {"type": "http", "params": {"url": "https://API.example.com:8443/hook"}},
        ],
        input={"nested": [1, "two", None], "n": 1.5},
        queue="dispatch-probe",
        priority=9,
        max_retries=0,
        retry_backoff=0.5,
        retry_backoff_max=7,
        retry_jitter=False,
        timeout=12,
        concurrency_key="customer:42",
        max_concurrency=2,
        rate_limit="partner-api",
        callback_url="https://hooks.example.com/done?run=1",
    ),
]


def tick_job(schedule: Schedule, tick: datetime = TICK) -> Job:
    made = job_insert_ticks(schedule_ids=[schedule.id], ticks=[tick], run_at=[tick], now=NOW)
    return Job.objects.get(id=made[(schedule.id, tick)])


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_a_ticks_job_is_the_row_job_values_makes_from_the_template(user, spec):
    schedule = make_schedule(user, now=NOW, job=spec)
    [from_values] = job_insert([job_values(owner_id=user.pk, spec=replace(spec, run_at=TICK))])
    job = tick_job(schedule)
    assert model_to_dict(job, exclude=PER_ROW) == model_to_dict(
        Job.objects.get(id=from_values), exclude=PER_ROW
    )
    assert (job.run_at, job.schedule_id, job.scheduled_for) == (TICK, schedule.id, TICK)
    assert job.created_at == job.updated_at == NOW
    assert len(job.trace_id) == 32 and int(job.trace_id, 16) >= 0


def test_a_template_missing_keys_takes_the_jobspec_defaults(user):
    # As JobSpec(**template) would: keys a template lacks take their defaults.
    schedule = make_schedule(user, now=NOW)
    Schedule.objects.filter(id=schedule.id).update(
        job_template={"name": "bare", "steps": SPECS[0].steps}
    )
    [from_values] = job_insert([job_values(owner_id=user.pk, spec=SPECS[0])])
    exclude = PER_ROW | {"name"}
    assert model_to_dict(tick_job(schedule), exclude=exclude) == model_to_dict(
        Job.objects.get(id=from_values), exclude=exclude
    )


def test_many_ticks_in_one_statement_each_with_its_own_ids(user):
    schedules = [make_schedule(user, now=NOW, job=SPECS[n % 2]) for n in range(3)]
    ticks = [(schedules[n % 3].id, TICK + timedelta(minutes=n)) for n in range(12)]
    given = uuid.uuid4()
    made = job_insert_ticks(
        schedule_ids=[s for s, _ in ticks],
        ticks=[t for _, t in ticks],
        run_at=[t for _, t in ticks],
        ids=[given] + [None] * 11,  # an id of the caller's, or a new one
    )
    assert set(made) == set(ticks) and made[ticks[0]] == given
    jobs = Job.objects.filter(id__in=made.values())
    names = [s.job_template["name"] for s in schedules] * 4
    assert sorted(jobs.values_list("name", flat=True)) == sorted(names)
    assert len(set(jobs.values_list("trace_id", flat=True))) == 12


def test_a_tick_that_has_its_job_is_skipped_and_not_returned(user):
    schedule = make_schedule(user, now=NOW)
    first = tick_job(schedule)
    again = job_insert_ticks(schedule_ids=[schedule.id], ticks=[TICK], run_at=[TICK])
    assert again == {}
    assert list(Job.objects.filter(schedule=schedule)) == [first]


@pytest.mark.django_db(transaction=True)
def test_the_dispatchers_are_woken_when_the_insert_commits(user):
    schedule = make_schedule(user, now=NOW)
    with listener() as conn:
        with transaction.atomic():
            tick_job(schedule)
            assert list(conn.notifies(timeout=0.2)) == []
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
