"""Schedules edited at any rate while beat runs (issue #18): beat, which no longer holds a row per
schedule, neither notices nor falls over, and the dispatchers keep firing ticks."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from jobs.models import Job, Schedule
from tests.chaos.conftest import QUEUE
from tests.conftest import client_for
from tests.support import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

CLIENTS, PER_CLIENT = 8, 125  # 1,000 schedules, each created and deleted through the API
LOG = [{"type": "log", "params": {"message": "tick"}}]


def beat_sent(chaos, entry: str) -> int:
    log = (chaos.logs / "beat.log").read_text(errors="replace")
    return log.count(f"Sending due task {entry} ")


def test_beat_survives_schedules_created_and_deleted_by_concurrent_api_clients(chaos, user):
    # An entry of beat's own, every second, to a queue nobody serves: proof that beat still works.
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="beat-probe", task="deadletter.purge", interval=every_second, queue="beat-probe"
    )
    chaos.start_beat("beat")
    chaos.start_dispatcher()
    wait_for(lambda: beat_sent(chaos, "beat-probe") > 0, timeout=60, what="beat to send")
    marker = PeriodicTasks.last_change()
    answers: list[int] = []

    def client(n: int) -> None:
        api = client_for(user)
        try:
            for i in range(PER_CLIENT):
                body = {"name": f"churn-{n}-{i}", "cron": "* * * * *", "job": {"steps": LOG}}
                created = api.post("/api/v1/schedules/", body, format="json")
                answers.append(created.status_code)
                if created.status_code == 201:
                    deleted = api.delete(f"/api/v1/schedules/{created.json()['id']}/")
                    answers.append(deleted.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(set(answers)) == [201, 204] and len(answers) == 2 * CLIENTS * PER_CLIENT
    assert not Schedule.objects.exists()

    assert chaos.processes["beat"].poll() is None  # beat is alive
    assert PeriodicTasks.last_change() == marker  # and had nothing to reload
    sent = beat_sent(chaos, "beat-probe")
    wait_for(lambda: beat_sent(chaos, "beat-probe") > sent, what="beat to send again")
    assert "Traceback" not in (chaos.logs / "beat.log").read_text(errors="replace")

    # And ticks still fire: a schedule made through the API, its next tick forged to now.
    api = client_for(user)
    body = {"name": "after", "cron": "* * * * *", "job": {"steps": LOG, "queue": QUEUE}}
    schedule_id = api.post("/api/v1/schedules/", body, format="json").json()["id"]
    tick = timezone.now()
    Schedule.objects.filter(id=schedule_id).update(next_fire_at=tick)
    job = wait_for(lambda: Job.objects.filter(schedule_id=schedule_id).first(), what="the tick")
    assert job.scheduled_for == tick
