"""Creating, editing, pausing, resuming and deleting schedules, with the beat rows they own."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from jobplatform.errors import Conflict, InvalidInput
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.schedules import firing as firing_services
from jobs.schedules.firing import schedule_fire
from jobs.schedules.services import (
    FIRE_SCHEDULE_TASK,
    ScheduleSpec,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_spec,
    schedule_update,
)
from tests.jobs.schedules.conftest import make_schedule, template, utc

pytestmark = pytest.mark.django_db

T0 = utc(2026, 5, 4, 9, 58)
TICK = utc(2026, 5, 4, 10, 0)


def beat_rows() -> tuple[int, int]:
    return PeriodicTask.objects.count(), CrontabSchedule.objects.count()


def test_a_schedule_owns_a_periodic_task_on_a_crontab_of_its_own(user):
    first = make_schedule(user, now=T0, cron="30 2 * * *", timezone="Europe/Berlin")
    second = make_schedule(user, now=T0)
    task = PeriodicTask.objects.select_related("crontab").get(id=first.periodic_task_id)
    assert (task.name, task.task, task.args) == (
        f"schedule:{first.id}",
        FIRE_SCHEDULE_TASK,
        f'["{first.id}"]',
    )
    assert (task.queue, task.priority, task.enabled) == ("default", 0, True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month) == ("*", "*", "*")
    assert (crontab.month_of_year, crontab.day_of_week, str(crontab.timezone)) == ("*", "*", "UTC")
    assert second.periodic_task.crontab_id != crontab.id
    assert first.next_fire_at == utc(2026, 5, 5, 0, 30)  # 02:30 in Berlin (+02:00)


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
    before = beat_rows()
    with pytest.raises(InvalidInput) as refused:
        make_schedule(user, now=T0, **change)
    assert refused.value.code == code
    assert (Schedule.objects.count(), beat_rows()) == (0, before)


def test_a_second_schedule_of_the_same_name_is_a_conflict_and_leaves_no_beat_rows(user, admin):
    make_schedule(user, now=T0, name="nightly")
    before = beat_rows()
    with pytest.raises(Conflict) as refused:
        make_schedule(user, now=T0, name="nightly")
    assert refused.value.code == "SCHEDULES.NAME_TAKEN"
    assert beat_rows() == before
    make_schedule(admin, now=T0, name="nightly")  # names are per owner


def test_the_schedule_and_its_beat_rows_are_written_in_one_transaction(user, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise RuntimeError("beat's table is unavailable")

    before = beat_rows()
    monkeypatch.setattr(PeriodicTask, "save", refuse)
    with pytest.raises(RuntimeError):
        make_schedule(user, now=T0)
    assert (Schedule.objects.count(), beat_rows()) == (0, before)  # its crontab rolled back too


def test_an_edit_recomputes_next_fire_at_and_tells_beat(user):
    schedule = make_schedule(user, now=T0)
    marker = PeriodicTasks.last_change()
    spec = replace(schedule_spec(schedule=schedule), cron="0 9 * * *", timezone="Asia/Tokyo")
    edited = schedule_update(schedule_id=schedule.id, spec=spec, now=T0)
    assert edited.next_fire_at == utc(2026, 5, 5, 0, 0)  # 09:00 in Tokyo
    assert edited.version == schedule.version + 1
    task = PeriodicTask.objects.get(id=schedule.periodic_task_id)
    assert "0 9 * * *, Asia/Tokyo" in task.description
    assert PeriodicTasks.last_change() > marker  # saved with save(): beat reloads


def test_an_edit_racing_beat_keeps_the_tick_that_was_due(user):
    schedule = make_schedule(user, now=T0)
    late = TICK + timedelta(seconds=20)  # 10:00 is due, and beat's wake-up is still on its way
    spec = replace(schedule_spec(schedule=schedule), jitter=5)
    assert schedule_update(schedule_id=schedule.id, spec=spec, now=late).next_fire_at == TICK
    spec = replace(spec, cron="*/10 * * * *")
    assert schedule_update(schedule_id=schedule.id, spec=spec, now=late).next_fire_at == TICK
    assert len(schedule_fire(schedule_id=schedule.id, now=late).job_ids) == 1


def test_a_firing_that_read_the_schedule_before_an_edit_claims_nothing(user, monkeypatch):
    schedule = make_schedule(user, now=T0)
    real_plan = firing_services.misfire_plan

    def plan_then_pause(**kwargs):
        plan = real_plan(**kwargs)
        # An operator pauses the schedule between the firing's read and its claim.
        schedule_pause(schedule_id=schedule.id, now=TICK)
        return plan

    monkeypatch.setattr(firing_services, "misfire_plan", plan_then_pause)
    assert schedule_fire(schedule_id=schedule.id, now=TICK).fired == ()
    assert not Job.objects.filter(schedule=schedule).exists()


def test_pause_and_resume(user):
    schedule = make_schedule(user, now=T0)
    paused = schedule_pause(schedule_id=schedule.id, note="vendor API down", now=T0)
    assert (paused.enabled, paused.next_fire_at, paused.pause_note) == (
        False,
        None,
        "vendor API down",
    )
    assert PeriodicTask.objects.get(id=schedule.periodic_task_id).enabled is False
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
    assert PeriodicTask.objects.get(id=schedule.periodic_task_id).enabled is True
    assert schedule_fire(schedule_id=schedule.id, now=utc(2026, 5, 4, 11, 3)).fired == ()


def test_a_schedule_created_paused_has_no_next_fire_and_beat_does_not_wake_it(user):
    schedule = make_schedule(user, now=T0, enabled=False)
    assert (schedule.next_fire_at, schedule.paused_at) == (None, T0)
    assert schedule.periodic_task.enabled is False


def test_delete_removes_the_beat_rows_and_keeps_the_jobs(user):
    schedule = make_schedule(user, now=T0)
    make_schedule(user, now=T0)  # another, whose rows stay
    schedule_fire(schedule_id=schedule.id, now=TICK)
    job = Job.objects.get(schedule=schedule)
    marker, (tasks, crontabs) = PeriodicTasks.last_change(), beat_rows()
    schedule_delete(schedule_id=schedule.id)
    assert not Schedule.objects.filter(id=schedule.id).exists()
    assert not PeriodicTask.objects.filter(id=schedule.periodic_task_id).exists()
    assert not CrontabSchedule.objects.filter(id=schedule.periodic_task.crontab_id).exists()
    assert beat_rows() == (tasks - 1, crontabs - 1)
    assert not ScheduleFiring.objects.filter(schedule_id=schedule.id).exists()
    job.refresh_from_db()
    assert (job.schedule_id, job.scheduled_for) == (None, TICK)
    assert PeriodicTasks.last_change() > marker


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
