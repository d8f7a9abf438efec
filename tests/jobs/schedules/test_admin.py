"""Django admin: schedules with their next runs, and actions that call the services."""

from __future__ import annotations

import pytest

from jobs.models import Job, Schedule, ScheduleFiring
from tests.jobs.schedules.conftest import fire, make_schedule, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin):
    """An admin-role user (staff, not a superuser) logged in to the admin."""
    client.force_login(admin)
    return client


def test_schedules_are_listed_with_their_next_runs(operator, user):
    schedule = make_schedule(user, now=utc(2026, 3, 27), name="berlin", cron="30 2 * * *",
                             timezone="Europe/Berlin")  # fmt: skip
    listing = operator.get("/admin/jobs/schedule/")
    assert listing.status_code == 200
    assert b"berlin" in listing.content
    assert b"2026-03-29 03:00 CEST (moved: 02:30 did not exist)" in listing.content
    page = operator.get(f"/admin/jobs/schedule/{schedule.id}/change/")
    assert page.status_code == 200
    assert b"2026-03-27 02:30 CET" in page.content


def test_pause_resume_and_trigger_actions_go_through_the_services(operator, user):
    schedule = make_schedule(user, now=utc(2026, 5, 4, 9, 58))
    url = "/admin/jobs/schedule/"
    operator.post(url, {"action": "pause_schedules", "_selected_action": [str(schedule.id)]})
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_fire_at) == (False, None)
    assert schedule.pause_note.startswith("paused in the admin by")
    operator.post(url, {"action": "resume_schedules", "_selected_action": [str(schedule.id)]})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_fire_at is not None
    response = operator.post(
        url, {"action": "trigger_schedules", "_selected_action": [str(schedule.id)]}, follow=True
    )
    assert b"Triggered: 1 job(s) created." in response.content
    assert Job.objects.filter(schedule=schedule).count() == 1


def test_deleting_in_the_admin_goes_through_the_service(operator, user):
    schedule = make_schedule(user, now=utc(2026, 5, 4, 9, 58))
    fire(schedule, now=utc(2026, 5, 4, 10))
    operator.post(f"/admin/jobs/schedule/{schedule.id}/delete/", {"post": "yes"})
    assert not Schedule.objects.filter(id=schedule.id).exists()
    assert not ScheduleFiring.objects.filter(schedule_id=schedule.id).exists()
    assert Job.objects.get().scheduled_for == utc(2026, 5, 4, 10)  # its job stays
