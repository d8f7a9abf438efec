"""Firing against real PostgreSQL: one job per tick however often or concurrently the dispatchers
sweep, the overlap policy decided from the jobs table, the misfire policy after downtime."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobplatform.errors import Conflict
from jobs import lifecycle
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.schedules import firing as firing_services
from jobs.schedules.cron import Ticks, parse_cron, zone
from jobs.schedules.firing import schedule_trigger, schedules_fire_due
from jobs.schedules.services import schedule_pause
from tests.jobs.factories import JobFactory
from tests.jobs.schedules.conftest import PROBE_QUEUE, fire, make_schedule, template, utc

T0 = utc(2026, 5, 4, 9, 58)  # created two minutes before the 10:00 tick
TICK = utc(2026, 5, 4, 10, 0)
SECOND = timedelta(seconds=1)

pytestmark = pytest.mark.django_db


def outcomes(schedule: Schedule) -> list[tuple[str, str]]:
    firings = ScheduleFiring.objects.filter(schedule=schedule).order_by("id")
    return [(f.scheduled_for.strftime("%H:%M"), f.outcome) for f in firings]


def jobs_of(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule=schedule).order_by("scheduled_for", "created_at"))


def test_a_due_tick_makes_one_pending_job_from_the_template(user):
    job = template(name="report", priority=8, input={"a": 1}, max_retries=1)
    schedule = make_schedule(user, now=T0, job=job)
    assert schedule.next_fire_at == TICK
    assert fire(schedule, now=TICK - SECOND).fired == ()  # not yet due
    fired_at = TICK + timedelta(milliseconds=40)
    result = fire(schedule, now=fired_at)
    [made] = jobs_of(schedule)
    assert result.job_ids == [made.id]
    assert (made.status, made.scheduled_for, made.run_at) == ("pending", TICK, fired_at)
    assert (made.name, made.priority, made.input, made.max_retries) == ("report", 8, {"a": 1}, 1)
    assert made.owner == user
    schedule.refresh_from_db()
    assert (schedule.next_fire_at, schedule.last_fired_at) == (
        TICK + timedelta(minutes=5),
        fired_at,
    )
    firing = ScheduleFiring.objects.get(schedule=schedule)
    assert (firing.scheduled_for, firing.fired_at, firing.job_id) == (TICK, fired_at, made.id)


def test_two_sweeps_for_one_tick_make_one_job(user):
    # Created a minute ago, every minute: the current minute's tick is due now, for real.
    schedule = make_schedule(user, now=timezone.now() - timedelta(minutes=1), cron="* * * * *")
    due = Schedule.objects.get(id=schedule.id).next_fire_at
    schedules_fire_due()
    schedules_fire_due()  # a second dispatcher
    made = jobs_of(schedule)
    assert len(made) == 1
    assert made[0].scheduled_for <= timezone.now()
    assert Schedule.objects.get(id=schedule.id).next_fire_at > due


def test_a_second_call_with_the_same_moment_finds_the_tick_claimed(user):
    schedule = make_schedule(user, now=T0)
    first = fire(schedule, now=TICK)
    again = fire(schedule, now=TICK)
    assert (len(first.job_ids), again.fired) == (1, ())
    assert len(jobs_of(schedule)) == 1


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_make_one_job_per_tick(user):
    schedule = make_schedule(user, now=T0, cron="* * * * *", job=template(queue=PROBE_QUEUE))
    made: list = []
    for minute in range(8):
        now = TICK + timedelta(minutes=minute, milliseconds=5)
        barrier = threading.Barrier(2)

        def sweeper(now=now, barrier=barrier) -> None:
            try:
                barrier.wait(timeout=10)
                made.extend(fire(schedule, now=now).job_ids)
            finally:
                connection.close()

        threads = [threading.Thread(target=sweeper) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    ticks = [job.scheduled_for for job in jobs_of(schedule)]
    assert ticks == [TICK + timedelta(minutes=m) for m in range(8)]
    assert sorted(made) == sorted(job.id for job in jobs_of(schedule))


def test_the_database_lets_one_job_per_schedule_tick(user):
    schedule = make_schedule(user, now=T0)
    JobFactory(owner=user, schedule=schedule, scheduled_for=TICK)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(owner=user, schedule=schedule, scheduled_for=TICK)
    # Jobs no schedule made stay out of the constraint.
    JobFactory.create_batch(2, owner=user)


def test_a_tick_that_already_has_its_job_is_recorded_as_a_duplicate(user):
    schedule = make_schedule(user, now=T0)
    existing = JobFactory(owner=user, schedule=schedule, scheduled_for=TICK, status="succeeded")
    result = fire(schedule, now=TICK)
    assert [(f.outcome, f.job_id) for f in result.fired] == [("duplicate", None)]
    assert [job.id for job in jobs_of(schedule)] == [existing.id]


# --- overlap -------------------------------------------------------------------------------------


def fire_at(schedule: Schedule, *minutes_after: int) -> None:
    for minutes in minutes_after:
        fire(schedule, now=TICK + timedelta(minutes=minutes))


@pytest.mark.parametrize("status", sorted(Job.Status))
def test_skip_makes_no_job_while_an_earlier_one_is_unfinished(user, status):
    schedule = make_schedule(user, now=T0, overlap="skip")
    fire_at(schedule, 0)
    Job.objects.filter(schedule=schedule).update(status=status)
    fire_at(schedule, 5)
    if status in lifecycle.ACTIVE:
        assert outcomes(schedule) == [("10:00", "created"), ("10:05", "skipped_overlap")]
        assert len(jobs_of(schedule)) == 1
    else:
        assert outcomes(schedule) == [("10:00", "created"), ("10:05", "created")]


def test_allow_makes_a_job_whatever_is_running(user):
    schedule = make_schedule(user, now=T0, overlap="allow")
    fire_at(schedule, 0)
    Job.objects.filter(schedule=schedule).update(status="running")
    fire_at(schedule, 5)
    assert [job.status for job in jobs_of(schedule)] == ["running", "pending"]


def test_buffer_one_keeps_one_tick_waiting_and_runs_it_when_the_job_ends(user):
    schedule = make_schedule(user, now=T0, overlap="buffer_one")
    fire_at(schedule, 0)
    Job.objects.filter(schedule=schedule).update(status="running")
    fire_at(schedule, 5, 10)
    assert outcomes(schedule) == [
        ("10:00", "created"),
        ("10:05", "buffered"),
        ("10:10", "skipped_overlap"),  # one is waiting already
    ]
    assert Schedule.objects.get(id=schedule.id).buffered_for == TICK + timedelta(minutes=5)
    fire_at(schedule, 11)  # nothing due, the job still runs: the buffered tick keeps waiting
    assert len(jobs_of(schedule)) == 1
    Job.objects.filter(schedule=schedule).update(status="succeeded")
    fire_at(schedule, 12)  # the next sweep after the job ended, between two ticks
    assert [(j.scheduled_for.strftime("%H:%M"), j.status) for j in jobs_of(schedule)] == [
        ("10:00", "succeeded"),
        ("10:05", "pending"),
    ]
    schedule.refresh_from_db()
    assert (schedule.buffered_for, schedule.next_fire_at) == (None, TICK + timedelta(minutes=15))


def test_cancel_previous_cancels_the_unfinished_job_and_starts_the_new_one(user):
    schedule = make_schedule(user, now=T0, overlap="cancel_previous")
    fire_at(schedule, 0)
    [previous] = jobs_of(schedule)
    Job.objects.filter(id=previous.id).update(status="running")
    fire_at(schedule, 5)
    previous.refresh_from_db()
    assert previous.status == "cancelled"
    firing = ScheduleFiring.objects.filter(schedule=schedule).latest("id")
    assert (firing.outcome, firing.cancelled) == ("created", [str(previous.id)])
    assert [job.status for job in jobs_of(schedule)] == ["cancelled", "pending"]


# --- misfires, jitter, start and end -----------------------------------------------------------


def test_after_downtime_run_once_makes_one_job_for_all_missed_ticks(user):
    schedule = make_schedule(user, now=T0)  # run_once is the default
    result = fire(schedule, now=utc(2026, 5, 4, 12, 2))
    [made] = jobs_of(schedule)
    assert made.scheduled_for == utc(2026, 5, 4, 12, 0)
    assert ScheduleFiring.objects.get(schedule=schedule).missed == 24
    assert result.job_ids == [made.id]
    assert Schedule.objects.get(id=schedule.id).next_fire_at == utc(2026, 5, 4, 12, 5)


def test_after_downtime_skip_records_the_missed_ticks_and_waits_for_the_next(user):
    schedule = make_schedule(user, now=T0, misfire="skip")
    fire(schedule, now=utc(2026, 5, 4, 12, 2))
    assert jobs_of(schedule) == []
    firing = ScheduleFiring.objects.get(schedule=schedule)
    assert (firing.outcome, firing.scheduled_for, firing.missed) == ("skipped_misfire", TICK, 25)


def test_after_downtime_run_all_runs_the_missed_ticks_oldest_first_capped(user):
    schedule = make_schedule(user, now=T0, misfire="run_all", misfire_window=1800, misfire_cap=4)
    now = utc(2026, 5, 4, 12, 2)
    fire(schedule, now=now)
    made = jobs_of(schedule)
    assert [job.scheduled_for.strftime("%H:%M") for job in made] == [
        "11:45",
        "11:50",
        "11:55",
        "12:00",
    ]
    # Due at once, in tick order: the dispatcher releases them oldest first.
    assert [job.run_at for job in made] == sorted(job.run_at for job in made)
    assert all(now <= job.run_at < now + SECOND for job in made)
    assert outcomes(schedule)[0] == ("10:00", "skipped_misfire")


def test_jitter_delays_each_job_by_up_to_that_many_seconds(user):
    schedule = make_schedule(user, now=T0, cron="* * * * *", jitter=30)
    for minute in range(20):
        fire_at(schedule, minute)
    delays = [(job.run_at - job.scheduled_for).total_seconds() for job in jobs_of(schedule)]
    assert len(delays) == 20
    assert all(0 <= d <= 30 for d in delays)
    assert len({round(d, 3) for d in delays}) > 1


def test_start_at_and_end_at_bound_the_ticks_and_firing_stops_after_the_end(user):
    schedule = make_schedule(
        user, now=T0, start_at=utc(2026, 5, 4, 10, 3), end_at=utc(2026, 5, 4, 10, 10)
    )
    assert schedule.next_fire_at == utc(2026, 5, 4, 10, 5)
    fire_at(schedule, 5)
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 5, 4, 10, 10)
    fire_at(schedule, 10)
    schedule.refresh_from_db()
    assert schedule.next_fire_at is None
    fire_at(schedule, 15)
    assert [j.scheduled_for.strftime("%H:%M") for j in jobs_of(schedule)] == ["10:05", "10:10"]


def test_a_paused_schedule_does_not_fire(user):
    schedule = make_schedule(user, now=T0)
    schedule_pause(schedule_id=schedule.id, note="maintenance", now=T0)
    assert fire(schedule, now=TICK).fired == ()
    assert jobs_of(schedule) == []


def test_trigger_fires_now_under_the_overlap_policy(user):
    schedule = make_schedule(user, now=T0, overlap="skip")
    now = utc(2026, 5, 4, 10, 2, 17)
    result = schedule_trigger(schedule_id=schedule.id, now=now)
    [made] = jobs_of(schedule)
    assert (result.job_ids, made.scheduled_for) == ([made.id], now)
    assert ScheduleFiring.objects.get(schedule=schedule).manual is True
    with pytest.raises(Conflict) as skipped:
        schedule_trigger(schedule_id=schedule.id, now=now + SECOND)
    assert skipped.value.code == "SCHEDULES.OVERLAP_SKIPPED"
    # The skip is recorded all the same: the service raises after its commit.
    assert [f.outcome for f in ScheduleFiring.objects.filter(schedule=schedule)] == [
        "skipped_overlap",
        "created",
    ]
    assert (
        Schedule.objects.get(id=schedule.id).next_fire_at == TICK
    )  # the cron's own tick stays due


def test_only_the_latest_firings_are_kept(user, monkeypatch):
    monkeypatch.setattr(firing_services, "FIRINGS_KEPT", 3)
    schedule = make_schedule(user, now=T0, cron="* * * * *")
    fire_at(schedule, *range(6))
    assert [at for at, _ in outcomes(schedule)] == ["10:03", "10:04", "10:05"]


# --- property: sweeps at any moments fire every tick exactly once --------------------------------

_counter = iter(range(10**9))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.sampled_from(
        [
            ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 26)),
            ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 22)),
            ("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 12)),
            ("*/20 * * * *", "America/Santiago", utc(2026, 4, 4, 18)),
            ("0 0 * * *", "America/Santiago", utc(2026, 9, 3)),
            ("15 23,0 * * *", "America/Havana", utc(2026, 10, 30)),
        ]
    ),
    delays=st.lists(st.floats(0, 50), min_size=1, max_size=40),
    repeats=st.lists(st.booleans(), min_size=1, max_size=40),
)
def test_sweeps_at_any_moment_fire_every_tick_once(user, case, delays, repeats):
    expression, tz, start = case
    end = start + timedelta(days=4 if "*" not in expression.split()[1] else 1)
    expected = []
    tick = Ticks(parse_cron(expression), zone(tz)).at_or_after(start)
    while tick.at < end:
        expected.append(tick.at)
        tick = Ticks(parse_cron(expression), zone(tz)).next_after(tick.at)
    with transaction.atomic():
        schedule = make_schedule(
            user, now=start, cron=expression, timezone=tz, name=f"p{next(_counter)}"
        )
        for index, at in enumerate(expected):
            now = at + timedelta(seconds=delays[index % len(delays)])
            fire(schedule, now=now)
            if repeats[index % len(repeats)]:  # a second dispatcher's sweep
                fire(schedule, now=now + SECOND)
        assert [job.scheduled_for for job in jobs_of(schedule)] == expected
        assert set(outcomes(schedule)) <= {(t.strftime("%H:%M"), "created") for t in expected}
        transaction.set_rollback(True)


def test_the_overlap_check_reads_the_partial_index_of_unfinished_jobs(user):
    index = next(i for i in Job._meta.indexes if i.name == "job_schedule_active")
    assert set(dict(index.condition.children)["status__in"]) == lifecycle.ACTIVE
    schedule = make_schedule(user, now=T0)
    # A schedule with a long history: its finished jobs must not be walked at every firing.
    Job.objects.bulk_create(
        JobFactory.build(
            owner=user,
            schedule=schedule,
            scheduled_for=T0 - timedelta(minutes=n),
            status="succeeded",
        )
        for n in range(500)
    )
    query = Job.objects.filter(schedule_id=schedule.id, status__in=lifecycle.ACTIVE)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = query.values("id").query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "job_schedule_active" in plan, plan
