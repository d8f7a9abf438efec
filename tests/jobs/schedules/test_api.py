"""REST: /api/v1/schedules/ and GET /api/v1/jobs/?schedule=."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, Schedule, ScheduleFiring
from jobs.schedules.firing import schedules_fire_due
from tests.conftest import client_for
from tests.jobs.schedules.conftest import fire, make_schedule, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/schedules/"
LOG = [{"type": "log", "params": {"message": "tick"}}]


def create(api, **body):
    body.setdefault("name", "every-five")
    body.setdefault("cron", "*/5 * * * *")
    body.setdefault("job", {"steps": LOG})
    return api.post(URL, body, format="json")


def error(response, status: int) -> str:
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


def test_create_answers_the_schedule_with_its_next_five_fire_times(api, user):
    response = create(
        api,
        name="berlin-report",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        job={"steps": LOG, "priority": 7},
        overlap="skip",
        jitter=5,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    schedule = Schedule.objects.get(id=body["id"])
    assert response["Location"] == f"/api/v1/schedules/{schedule.id}/"
    assert (schedule.owner, schedule.overlap, schedule.jitter) == (user, "skip", 5)
    assert body["job"]["name"] == "berlin-report"  # the template takes the schedule's name
    assert body["job"]["priority"] == 7
    assert (body["misfire"], body["enabled"], body["recent_jobs"]) == ("run_once", True, [])
    times = body["next_fire_times"]
    assert len(times) == 5
    assert all(t["at"][11:] in ("02:30:00+02:00", "02:30:00+01:00") for t in times)
    assert times[0]["utc"].endswith("Z") and times[0]["moved"] is False
    assert body["links"]["jobs"].endswith(f"/api/v1/jobs/?schedule={schedule.id}")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"cron": "*/5 * * *"}, "SCHEDULES.INVALID_CRON"),
        ({"cron": "0 25 * * *"}, "SCHEDULES.INVALID_CRON"),
        ({"timezone": "Berlin"}, "SCHEDULES.UNKNOWN_TIMEZONE"),
        ({"overlap": "never"}, "SCHEDULES.INVALID_OVERLAP"),
        ({"misfire": "run_all", "misfire_cap": 1000}, "SCHEDULES.INVALID_MISFIRE"),
        ({"start_at": "2030-01-01T10:00:00"}, "SCHEDULES.NAIVE_DATETIME"),
        ({"job": {"steps": [{"type": "teleport"}]}}, "JOBS.UNKNOWN_STEP_TYPE"),
        ({"job": {"steps": LOG, "run_at": "2030-01-01T10:00:00Z"}}, "API.VALIDATION_ERROR"),
        ({"job": {"steps": LOG, "colour": "red"}}, "API.VALIDATION_ERROR"),
        ({"job": "daily"}, "API.VALIDATION_ERROR"),
        ({"cron": 5}, "API.VALIDATION_ERROR"),
        ({"enabled": "yes"}, "API.VALIDATION_ERROR"),
        ({"start_at": "tomorrow"}, "API.VALIDATION_ERROR"),
        ({"every": "day"}, "API.VALIDATION_ERROR"),
    ],
)
def test_an_invalid_schedule_is_a_400_with_a_code(api, body, code):
    assert error(create(api, **body), 400) == code
    assert not Schedule.objects.exists()


def test_required_fields_and_a_taken_name(api):
    response = api.post(URL, {}, format="json")
    assert error(response, 400) == "API.VALIDATION_ERROR"
    assert set(response.json()["error"]["details"]) == {"name", "cron", "job"}
    create(api, name="dup")
    assert error(create(api, name="dup"), 409) == "SCHEDULES.NAME_TAKEN"


def test_owners_see_their_schedules_admins_see_all_others_get_404(api, user, admin):
    mine = make_schedule(user, now=timezone.now())
    theirs = make_schedule(admin, now=timezone.now())
    listed = api.get(URL).json()["results"]
    assert [s["id"] for s in listed] == [str(mine.id)]
    every = client_for(admin).get(URL).json()["results"]
    assert {s["id"] for s in every} == {str(mine.id), str(theirs.id)}
    for response in (
        api.get(f"{URL}{theirs.id}/"),
        api.patch(f"{URL}{theirs.id}/", {"cron": "* * * * *"}, format="json"),
        api.delete(f"{URL}{theirs.id}/"),
        api.post(f"{URL}{theirs.id}/pause/"),
        api.post(f"{URL}{theirs.id}/resume/"),
        api.post(f"{URL}{theirs.id}/trigger/"),
    ):
        assert error(response, 404) == "SCHEDULES.NOT_FOUND"
    theirs.refresh_from_db()
    assert (theirs.cron, theirs.enabled) == ("*/5 * * * *", True)


def test_detail_shows_recent_jobs_and_firings_and_the_list_recent_jobs(api, user):
    schedule = make_schedule(user, now=utc(2026, 5, 4, 9, 58), cron="* * * * *", overlap="skip")
    for minute in range(3):
        fire(schedule, now=utc(2026, 5, 4, 10, minute))
    body = api.get(f"{URL}{schedule.id}/").json()
    [job] = body["recent_jobs"]  # the next two ticks skipped: the first job is unfinished
    assert (job["scheduled_for"], job["status"]) == ("2026-05-04T10:00:00Z", "pending")
    assert [f["outcome"] for f in body["recent_firings"]] == [
        "skipped_overlap",
        "skipped_overlap",
        "created",
    ]
    assert body["recent_firings"][2]["job"] == job["id"]
    assert api.get(URL).json()["results"][0]["recent_jobs"] == body["recent_jobs"]


def test_the_preview_marks_fire_times_a_dst_transition_moved(api):
    schedule_id = create(api, cron="30 2 * * *", timezone="Europe/Berlin").json()["id"]
    # Forge where the schedule stands: just before the spring-forward night of 2026.
    Schedule.objects.filter(id=schedule_id).update(next_fire_at=utc(2026, 3, 28, 1, 30))
    times = api.get(f"{URL}{schedule_id}/").json()["next_fire_times"]
    assert times[1] == {
        "at": "2026-03-29T03:00:00+02:00",
        "utc": "2026-03-29T01:00:00Z",
        "local_time": "2026-03-29T02:30:00",
        "moved": True,
        "transition": "gap",
    }
    assert [t["moved"] for t in times] == [False, True, False, False, False]


def test_patch_changes_some_fields_and_recomputes_next_fire_at(api):
    schedule_id = create(api).json()["id"]
    response = api.patch(
        f"{URL}{schedule_id}/",
        {"cron": "0 6 * * 1-5", "timezone": "America/Santiago", "job": {"steps": LOG * 2}},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["cron"], body["timezone"], body["name"]) == (
        "0 6 * * 1-5",
        "America/Santiago",
        "every-five",
    )
    assert len(body["job"]["steps"]) == 2 and body["job"]["name"] == "every-five"
    assert all(t["at"][11:16] == "06:00" for t in body["next_fire_times"])
    assert body["next_fire_at"] == body["next_fire_times"][0]["utc"]
    refused = api.patch(f"{URL}{schedule_id}/", {"timezone": "Mars/Base"}, format="json")
    assert error(refused, 400) == "SCHEDULES.UNKNOWN_TIMEZONE"
    assert Schedule.objects.get(id=schedule_id).timezone == "America/Santiago"


def test_delete_removes_the_schedule_and_its_firings(api):
    schedule_id = create(api).json()["id"]
    assert api.post(f"{URL}{schedule_id}/trigger/").status_code == 201
    assert api.delete(f"{URL}{schedule_id}/").status_code == 204
    assert not ScheduleFiring.objects.filter(schedule_id=schedule_id).exists()
    assert error(api.get(f"{URL}{schedule_id}/"), 404) == "SCHEDULES.NOT_FOUND"


def test_pause_with_a_note_then_resume(api):
    schedule_id = create(api).json()["id"]
    paused = api.post(f"{URL}{schedule_id}/pause/", {"note": "migrating"}, format="json").json()
    assert (paused["enabled"], paused["pause_note"], paused["next_fire_at"]) == (
        False,
        "migrating",
        None,
    )
    assert len(paused["next_fire_times"]) == 5  # what a resume now would give
    assert api.post(f"{URL}{schedule_id}/pause/").status_code == 200  # again: a no-op
    resumed = api.post(f"{URL}{schedule_id}/resume/").json()
    assert (resumed["enabled"], resumed["pause_note"]) == (True, "")
    assert resumed["next_fire_at"] is not None
    assert error(api.post(f"{URL}{schedule_id}/pause/", {"why": 1}, format="json"), 400) == (
        "API.VALIDATION_ERROR"
    )


def test_trigger_makes_a_job_now_or_says_why_not(api):
    schedule_id = create(api, overlap="buffer_one").json()["id"]
    response = api.post(f"{URL}{schedule_id}/trigger/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["outcome"] == "created" and body["job"]["schedule"] == schedule_id
    assert response["Location"] == f"/api/v1/jobs/{body['job']['id']}/"
    buffered = api.post(f"{URL}{schedule_id}/trigger/")  # the first job is unfinished
    assert (buffered.status_code, buffered.json()["outcome"]) == (202, "buffered")
    assert error(api.post(f"{URL}{schedule_id}/trigger/"), 409) == "SCHEDULES.OVERLAP_SKIPPED"


def test_jobs_can_be_listed_by_schedule(api, user):
    schedule = make_schedule(user, now=timezone.now() - timedelta(minutes=6))
    make_schedule(user, now=timezone.now() - timedelta(minutes=6))  # another, fired too
    schedules_fire_due()
    Job.objects.create(owner=user, name="plain", steps=LOG)
    listed = api.get(f"/api/v1/jobs/?schedule={schedule.id}").json()["results"]
    assert [j["id"] for j in listed] == [str(Job.objects.get(schedule=schedule).id)]
    assert listed[0]["schedule"] == str(schedule.id) and listed[0]["scheduled_for"]
    assert error(api.get("/api/v1/jobs/?schedule=nope"), 400) == "API.VALIDATION_ERROR"
