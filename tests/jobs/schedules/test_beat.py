"""Beat's side: the database scheduler sees each schedule's task, and what it sends makes the
job, once, which a real worker runs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from jobplatform.celery import app as celery_app
from jobs.models import Job
from jobs.schedules.services import FIRE_SCHEDULE_TASK, schedule_pause
from tests.jobs.schedules.conftest import make_schedule, template
from tests.support import wait_for


@pytest.mark.django_db
def test_the_database_scheduler_wakes_each_enabled_schedule_every_minute(user):
    schedule = make_schedule(user, now=timezone.now())
    paused = make_schedule(user, now=timezone.now())
    schedule_pause(schedule_id=paused.id)
    entries = DatabaseScheduler(app=celery_app, lazy=True).all_as_schedule()
    entry = entries[f"schedule:{schedule.id}"]
    assert (entry.task, entry.args) == (FIRE_SCHEDULE_TASK, [str(schedule.id)])
    assert (entry.options["queue"], entry.options["priority"]) == ("default", 0)
    _, seconds_to_next = entry.is_due()
    assert 0 <= seconds_to_next <= 60
    assert f"schedule:{paused.id}" not in entries
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    assert FIRE_SCHEDULE_TASK in celery_app.tasks


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_beat_messages_make_one_job_that_a_real_worker_runs(platform, user, http_target):
    key = uuid.uuid4().hex
    steps = [{"type": "http", "params": {"url": f"{http_target.url}/ok/{key}"}}]
    # Every minute, created a minute ago: the current minute's tick is due.
    schedule = make_schedule(
        user, now=timezone.now() - timedelta(minutes=1), cron="* * * * *", job=template(steps=steps)
    )
    # What beat sends, twice: a second beat, or a redelivery.
    for _ in range(2):
        celery_app.send_task(FIRE_SCHEDULE_TASK, args=[str(schedule.id)], queue="default")
    job = wait_for(
        lambda: Job.objects.filter(schedule=schedule, status="succeeded").first(),
        what="the scheduled job to run",
    )
    platform.await_worker_log(f"Task {FIRE_SCHEDULE_TASK}")
    assert Job.objects.filter(schedule=schedule).count() == 1
    assert job.scheduled_for <= job.started_at
    assert http_target.count(f"/ok/{key}") == 1
