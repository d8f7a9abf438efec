"""The sweep: every due schedule fired set-based, in batches, by any number of dispatchers at once,
each tick once; the dispatcher wakes for the next tick; beat has nothing to do with it."""

from __future__ import annotations

import gc
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from jobplatform.celery import app as celery_app
from jobs.dispatcher import Dispatcher
from jobs.models import Job, Schedule, ScheduleFiring
from jobs.schedules import firing
from jobs.schedules.firing import schedules_fire_due
from jobs.schedules.services import SCHEDULES_CHANNEL
from tests.jobs.schedules.conftest import fire, make_schedule, template, utc
from tests.support import wait_for

T0 = utc(2026, 5, 4, 9, 58)
TICK = utc(2026, 5, 4, 10, 0)
# The dispatchers of these tests release nothing: what they fire stays PENDING to be looked at.
NO_QUEUE = ["none"]


@pytest.mark.django_db
def test_beat_has_no_entry_for_any_schedule(user):
    make_schedule(user, now=timezone.now())
    make_schedule(user, now=timezone.now(), cron="* * * * *")
    entries = DatabaseScheduler(app=celery_app, lazy=True).all_as_schedule()
    # Beat keeps only its own work: thousands of schedules are not thousands of beat entries.
    assert {entry.task for entry in entries.values()} <= {
        "deadletter.purge",
        "celery.backend_cleanup",
    }


@pytest.mark.django_db
def test_a_sweep_fires_every_due_schedule_in_batches_and_leaves_the_rest(user):
    every_minute = [make_schedule(user, now=T0, cron="* * * * *") for _ in range(9)]
    every_five = [make_schedule(user, now=T0) for _ in range(4)]  # */5: due at 10:00
    berlin = make_schedule(user, now=T0, cron="30 2 * * *", timezone="Europe/Berlin")
    paused = make_schedule(user, now=T0, cron="* * * * *", enabled=False)
    now = TICK + timedelta(seconds=1)
    swept = schedules_fire_due(now=now, batch_size=4)  # four batches, the last one short
    assert set(swept.fired) == {s.id for s in every_minute + every_five}
    assert swept.jobs == 13
    assert all(len(result.job_ids) == 1 for result in swept.fired.values())
    assert set(Job.objects.values_list("scheduled_for", flat=True)) == {TICK}
    next_fire = dict(Schedule.objects.values_list("id", "next_fire_at"))
    assert {next_fire[s.id] for s in every_minute} == {TICK + timedelta(minutes=1)}
    assert {next_fire[s.id] for s in every_five} == {TICK + timedelta(minutes=5)}
    assert (next_fire[berlin.id], next_fire[paused.id]) == (berlin.next_fire_at, None)
    assert schedules_fire_due(now=now, batch_size=4).fired == {}  # claimed: nothing is due


@pytest.mark.django_db
@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_off_during_a_sweep_and_as_it_was_after(
    user, monkeypatch, enabled
):
    make_schedule(user, now=T0, cron="* * * * *")
    during = []
    fire_batch = firing._fire_batch

    def watched(claimed, **kwargs):
        during.append(gc.isenabled())
        return fire_batch(claimed, **kwargs)

    monkeypatch.setattr(firing, "_fire_batch", watched)
    (gc.enable if enabled else gc.disable)()
    try:
        assert schedules_fire_due(now=TICK).jobs == 1
        assert (during, gc.isenabled()) == ([False], enabled)
    finally:
        gc.enable()


@pytest.mark.django_db
def test_a_schedule_whose_ticks_cannot_be_computed_is_paused_and_the_rest_fire(user):
    healthy = make_schedule(user, now=T0, cron="* * * * *")
    broken = make_schedule(user, now=T0, cron="* * * * *")
    # No edit can store it; a zone gone from tzdata after an upgrade can.
    Schedule.objects.filter(id=broken.id).update(timezone="Mars/Olympus_Mons")
    swept = schedules_fire_due(now=TICK)
    assert set(swept.fired) == {healthy.id}
    broken.refresh_from_db()
    assert (broken.enabled, broken.next_fire_at) == (False, None)
    assert broken.pause_note.startswith("paused by the dispatcher: its ticks cannot be computed")
    assert "Mars/Olympus_Mons" in broken.pause_note
    assert schedules_fire_due(now=TICK + timedelta(minutes=1)).fired.keys() == {healthy.id}


@pytest.mark.django_db
def test_the_misfire_plan_is_computed_once_per_cron_zone_and_tick(user, monkeypatch):
    calls = []

    def counted(**kwargs):
        calls.append((kwargs["ticks"].cron.expression, kwargs["ticks"].tz.key, kwargs["first"]))
        return real(**kwargs)

    real = firing.misfire_plan
    monkeypatch.setattr(firing, "misfire_plan", counted)
    for _ in range(20):
        make_schedule(user, now=T0, cron="* * * * *")
        make_schedule(user, now=T0, cron="* * * * *", timezone="Asia/Tokyo")
    late = make_schedule(user, now=T0 - timedelta(hours=1), cron="* * * * *")
    assert schedules_fire_due(now=TICK).jobs == 41
    assert sorted(calls) == [
        ("* * * * *", "Asia/Tokyo", T0),
        ("* * * * *", "UTC", late.next_fire_at),
        ("* * * * *", "UTC", T0),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_share_many_schedules_and_fire_each_tick_once(user):
    schedules = [
        make_schedule(user, now=T0, cron="* * * * *", misfire="run_all") for _ in range(120)
    ]
    now = TICK + timedelta(seconds=1)  # 09:58, 09:59 and 10:00 are due: three jobs each
    barrier = threading.Barrier(2)
    made: dict[str, list] = {"a": [], "b": []}

    def sweeper(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            swept = schedules_fire_due(now=now, batch_size=7)
            made[name] = [job for result in swept.fired.values() for job in result.job_ids]
        finally:
            connection.close()

    threads = [threading.Thread(target=sweeper, args=(name,)) for name in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ticks = list(Job.objects.values_list("schedule_id", "scheduled_for"))
    assert len(ticks) == len(set(ticks)) == 3 * len(schedules)
    assert set(made["a"]).isdisjoint(made["b"])
    assert sorted(made["a"] + made["b"]) == sorted(Job.objects.values_list("id", flat=True))
    assert ScheduleFiring.objects.exclude(outcome="created").count() == 0


@pytest.mark.django_db(transaction=True)
def test_one_sweep_fires_in_several_sessions_and_each_tick_once(user, monkeypatch):
    schedules = [make_schedule(user, now=T0, cron="* * * * *") for _ in range(40)]
    sessions = 3
    # Each session's first batch after the first one waits, with its schedules claimed, until
    # every session has claimed one: all three take part, whatever the threads' timing.
    together = threading.Barrier(sessions)
    fired_by: dict[int, list[int]] = {}  # each thread's batches (their sizes)
    fire_batch = firing._fire_batch

    def counted(claimed, **kwargs):
        batches = fired_by.setdefault(threading.get_ident(), [])
        if claimed and len(batches) == int(threading.get_ident() == main):
            together.wait(timeout=10)
        batches.append(len(claimed))
        return fire_batch(claimed, **kwargs)

    main = threading.get_ident()
    monkeypatch.setattr(firing, "_fire_batch", counted)
    swept = schedules_fire_due(now=TICK + timedelta(seconds=1), batch_size=3, sessions=sessions)
    assert len([b for b in fired_by.values() if sum(b)]) == sessions
    assert sum(map(sum, fired_by.values())) == swept.jobs == len(schedules)
    assert set(swept.fired) == {s.id for s in schedules}
    ticks = list(Job.objects.values_list("schedule_id", "scheduled_for"))
    assert sorted(ticks) == sorted((s.id, TICK) for s in schedules)
    assert ScheduleFiring.objects.filter(outcome="created").count() == len(schedules)
    assert set(Schedule.objects.values_list("next_fire_at", flat=True)) == {
        TICK + timedelta(minutes=1)
    }


@pytest.fixture
def dispatcher_thread():
    """Run a Dispatcher in a thread until the test ends."""
    stop = threading.Event()
    threads = []

    def start(dispatcher: Dispatcher) -> Dispatcher:
        def run() -> None:
            try:
                dispatcher.run(stop)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        return dispatcher

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def listening(channel: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s", [f"LISTEN {channel}"]
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_dispatcher_wakes_for_the_next_tick_not_at_its_poll(user, dispatcher_thread):
    schedule = make_schedule(user, now=timezone.now(), cron="* * * * *")
    tick = timezone.now() + timedelta(seconds=1)  # forged: due in a second
    Schedule.objects.filter(id=schedule.id).update(next_fire_at=tick)
    dispatcher_thread(Dispatcher(poll=600, queues=NO_QUEUE))
    # Long before the poll: it slept until the tick, not until its next scan.
    job = wait_for(lambda: Job.objects.filter(schedule=schedule).first(), what="the tick")
    assert job.scheduled_for == tick <= job.created_at


@pytest.mark.django_db(transaction=True)
def test_a_new_schedule_wakes_a_sleeping_dispatcher(user, dispatcher_thread):
    dispatcher_thread(Dispatcher(poll=600, queues=NO_QUEUE))  # no schedule: it sleeps
    wait_for(lambda: listening(SCHEDULES_CHANNEL), what="the dispatcher to listen")
    # Created two minutes ago (forged): its first tick is due, and only the schedule's NOTIFY
    # at commit can tell the sleeping dispatcher.
    schedule = make_schedule(user, now=timezone.now() - timedelta(minutes=2), cron="* * * * *")
    wait_for(lambda: Job.objects.filter(schedule=schedule).exists(), what="the tick")
    assert Job.objects.filter(schedule=schedule).count() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_swept_tick_becomes_one_job_that_a_real_worker_runs(platform, user, http_target):
    key = uuid.uuid4().hex
    steps = [{"type": "http", "params": {"url": f"{http_target.url}/ok/{key}"}}]
    # Every minute, created a minute ago: the current minute's tick is due.
    schedule = make_schedule(
        user, now=timezone.now() - timedelta(minutes=1), cron="* * * * *", job=template(steps=steps)
    )
    fire(schedule)
    fire(schedule)  # a second dispatcher's sweep
    job = wait_for(
        lambda: Job.objects.filter(schedule=schedule, status="succeeded").first(),
        what="the scheduled job to run",
    )
    assert Job.objects.filter(schedule=schedule).count() == 1
    assert job.scheduled_for <= job.started_at
    assert http_target.count(f"/ok/{key}") == 1
