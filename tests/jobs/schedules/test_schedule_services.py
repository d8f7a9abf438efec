"""Creating, editing, pausing, resuming and deleting schedules."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django_celery_beat.models import PeriodicTask

from jobplatform.errors import Conflict, InvalidInput
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.schedules.services import (
    SCHEDULES_CHANNEL,
    ScheduleSpec,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_spec,
    schedule_update,
)
from tests.jobs.schedules.conftest import fire, make_schedule, template, utc
from tests.jobs.test_dispatcher import listener

pytestmark = pytest.mark.django_db

T0 = utc(2026, 5, 4, 9, 58)
TICK = utc(2026, 5, 4, 10, 0)


def test_a_schedule_keeps_its_next_tick_and_writes_nothing_to_beat(user):
    beat_rows = PeriodicTask.objects.count()  # beat's own: the dead-letter purge
    first = make_schedule(user, now=T0, cron="30 2 * * *", timezone="Europe/Berlin")
    assert first.next_fire_at == utc(2026, 5, 5, 0, 30)  # 02:30 in Berlin (+02:00)
    # Beat's reload never meets schedules: edits at any rate cannot upset it (issue #18).
    assert PeriodicTask.objects.count() == beat_rows


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"cron": "61 * * * *"}, "SCHEDULES.INVALID_CRON"),
        ({"cron": "0 0 30 2 *"}, "SCHEDULES.INVALID_CRON"),
        ({"timezone": "Europe/Atlantis"}, "SCHEDULES.UNKNOWN_TIMEZONE"),
        ({"overlap": "queue_all"}, "SCHEDULES.INVALID_OVERLAP"),
        ({"misfire": "catch_up"}, "SCHEDULES.INVALID_MISFIRE"),
        ({"misfire_window": 10}, "SCHEDULES.INVALID_MISFIRE"),
        ({"misfire_cap": 0}, "SCHEDULES.INVALID_MISFIRE"),
        ({"jitter": -1}, "SCHEDULES.INVALID_JITTER"),
        ({"start_at": utc(2026, 6, 1).replace(tzinfo=None)}, "SCHEDULES.NAIVE_DATETIME"),
        ({"start_at": utc(2026, 6, 2), "end_at": utc(2026, 6, 1)}, "SCHEDULES.INVALID_WINDOW"),
        ({"end_at": utc(2026, 5, 1)}, "SCHEDULES.INVALID_WINDOW"),  # in the past
        ({"name": ""}, "SCHEDULES.INVALID_NAME"),
        ({"job": template(run_at=utc(2026, 6, 1))}, "SCHEDULES.INVALID_JOB"),
        ({"job": template(steps=[{"type": "nope"}])}, "JOBS.UNKNOWN_STEP_TYPE"),
        ({"job": template(queue="nowhere")}, "JOBS.UNKNOWN_QUEUE"),
    ],
)
def test_an_invalid_schedule_is_refused_with_its_code_and_writes_nothing(user, change, code):
    with pytest.raises(InvalidInput) as refused:
        make_schedule(user, now=T0, **change)
    assert refused.value.code == code
    assert Schedule.objects.count() == 0


def test_a_second_schedule_of_the_same_name_is_a_conflict(user, admin):
    make_schedule(user, now=T0, name="nightly")
    with pytest.raises(Conflict) as refused:
        make_schedule(user, now=T0, name="nightly")
    assert refused.value.code == "SCHEDULES.NAME_TAKEN"
    assert Schedule.objects.count() == 1
    make_schedule(admin, now=T0, name="nightly")  # names are per owner


@pytest.mark.django_db(transaction=True)
def test_create_edit_and_resume_wake_the_dispatchers_at_commit_and_pause_does_not(user):
    with listener(SCHEDULES_CHANNEL) as conn:
        with transaction.atomic():
            schedule = make_schedule(user, now=T0)
            assert list(conn.notifies(timeout=0.2)) == []  # not before the commit
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
        spec = replace(schedule_spec(schedule=schedule), cron="0 9 * * *")
        schedule_update(schedule_id=schedule.id, spec=spec, now=T0)
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
        schedule_pause(schedule_id=schedule.id, now=T0)  # it fires later, if ever: no need
        assert list(conn.notifies(timeout=0.2)) == []
        schedule_resume(schedule_id=schedule.id, now=T0)
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
    connection.close()


def test_an_edit_recomputes_next_fire_at(user):
    schedule = make_schedule(user, now=T0)
    spec = replace(schedule_spec(schedule=schedule), cron="0 9 * * *", timezone="Asia/Tokyo")
    edited = schedule_update(schedule_id=schedule.id, spec=spec, now=T0)
    assert edited.next_fire_at == utc(2026, 5, 5, 0, 0)  # 09:00 in Tokyo
    assert edited.version == schedule.version + 1


def test_an_edit_racing_a_sweep_keeps_the_tick_that_was_due(user):
    schedule = make_schedule(user, now=T0)
    late = TICK + timedelta(seconds=20)  # 10:00 is due, and no sweep has fired it yet
    spec = replace(schedule_spec(schedule=schedule), jitter=5)
    assert schedule_update(schedule_id=schedule.id, spec=spec, now=late).next_fire_at == TICK
    spec = replace(spec, cron="*/10 * * * *")
    assert schedule_update(schedule_id=schedule.id, spec=spec, now=late).next_fire_at == TICK
    assert len(fire(schedule, now=late).job_ids) == 1


@pytest.mark.django_db(transaction=True)
def test_a_sweep_racing_a_pause_skips_the_schedule_and_fires_nothing_after_it(user):
    schedule = make_schedule(user, now=T0)
    locked, release = threading.Event(), threading.Event()

    def operator() -> None:
        try:
            with transaction.atomic():
                # An operator's pause holds the row while the sweep runs.
                schedule_pause(schedule_id=schedule.id, now=TICK)
                locked.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        assert fire(schedule, now=TICK).fired == ()  # skipped (SKIP LOCKED), not waited for
    finally:
        release.set()
        thread.join(timeout=10)
    assert fire(schedule, now=TICK).fired == ()  # paused by now
    assert not Job.objects.filter(schedule=schedule).exists()


def test_pause_and_resume(user):
    schedule = make_schedule(user, now=T0)
    paused = schedule_pause(schedule_id=schedule.id, note="vendor API down", now=T0)
    assert (paused.enabled, paused.next_fire_at, paused.pause_note) == (
        False,
        None,
        "vendor API down",
    )
    again = schedule_pause(schedule_id=schedule.id, now=T0 + timedelta(hours=1))
    assert (again.paused_at, again.pause_note, again.version) == (
        T0,
        "vendor API down",
        paused.version,
    )
    # Resumed at 11:02: the ticks from 10:00 to 11:00 fell while paused and do not run.
    resumed = schedule_resume(schedule_id=schedule.id, now=utc(2026, 5, 4, 11, 2))
    assert (resumed.enabled, resumed.paused_at, resumed.pause_note) == (True, None, "")
    assert resumed.next_fire_at == utc(2026, 5, 4, 11, 5)
    assert fire(schedule, now=utc(2026, 5, 4, 11, 3)).fired == ()


def test_a_schedule_created_paused_has_no_next_fire_and_no_sweep_fires_it(user):
    schedule = make_schedule(user, now=T0, enabled=False)
    assert (schedule.next_fire_at, schedule.paused_at) == (None, T0)
    assert fire(schedule, now=TICK).fired == ()


def test_delete_removes_the_firings_and_keeps_the_jobs(user):
    schedule = make_schedule(user, now=T0)
    other = make_schedule(user, now=T0)  # another, whose rows stay
    fire(schedule, now=TICK)
    job = Job.objects.get(schedule=schedule)
    schedule_delete(schedule_id=schedule.id)
    assert not Schedule.objects.filter(id=schedule.id).exists()
    assert not ScheduleFiring.objects.filter(schedule_id=schedule.id).exists()
    assert ScheduleFiring.objects.filter(schedule_id=other.id).exists()
    job.refresh_from_db()
    assert (job.schedule_id, job.scheduled_for) == (None, TICK)


def test_the_spec_of_a_schedule_round_trips(user):
    schedule = make_schedule(user, now=T0, overlap="buffer_one", jitter=7, misfire="run_all")
    spec = schedule_spec(schedule=schedule)
    assert isinstance(spec, ScheduleSpec)
    assert (spec.overlap, spec.jitter, spec.misfire, spec.job) == (
        "buffer_one",
        7,
        "run_all",
        template(),
    )
    again = schedule_create(owner=user, spec=replace(spec, name="copy"), now=T0)
    assert again.job_template == schedule.job_template
