from __future__ import annotations

import pytest
from django.utils import timezone

from deadletter.models import DeadLetter
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory, _error

pytestmark = pytest.mark.django_db

URL = "/api/v1/dead-letters/"


@pytest.fixture
def mine(user):
    """A dead letter of one of ``user``'s jobs."""
    return lambda **kw: DeadLetterFactory(job=FailedJobFactory(owner=user), **kw)


def error_code(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


def test_retry_answers_with_the_entry_retried_and_a_second_retry_is_a_409(api, mine):
    dead = mine()
    response = api.post(f"{URL}{dead.id}/retry/", {"note": "upstream fixed"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["job"]["status"], body["note"]) == (
        "retried",
        "pending",
        "upstream fixed",
    )
    assert [a["kind"] for a in body["actions"]] == ["retry"]
    again = api.post(f"{URL}{dead.id}/retry/", {}, format="json")
    assert error_code(again, 409) == "DEADLETTER.JOB_NOT_FAILED"
    assert again.json()["error"]["details"] == {"job_status": "pending", "state": "retried"}


def test_a_retry_without_a_body_is_a_plain_retry(api, mine):
    dead = mine()
    assert api.post(f"{URL}{dead.id}/retry/").status_code == 200


def test_retry_with_overrides_records_who_what_and_why(api, user, mine):
    dead = mine()
    Job.objects.filter(id=dead.job_id).update(next_step=1, step_outputs=[{"done": 0}])
    response = api.post(
        f"{URL}{dead.id}/retry/",
        {"note": "bigger budget", "max_retries": 6, "input": {"fixed": True}, "from_step": 0},
        format="json",
    )
    assert response.status_code == 200, response.content
    edit, retry = response.json()["actions"]
    assert (edit["kind"], edit["actor"], edit["note"]) == ("edit", user.username, "bigger budget")
    assert edit["details"]["max_retries"]["to"] == 6
    assert edit["details"]["input"] == {"from": {}, "to": {"fixed": True}}
    assert edit["details"]["from_step"] == {"from": 1, "to": 0}
    assert retry["kind"] == "retry"
    job = Job.objects.get(id=dead.job_id)
    assert (job.max_retries, job.input, job.next_step, job.step_outputs) == (
        6,
        {"fixed": True},
        0,
        [],
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from_step": 3}, 400, "DEADLETTER.INVALID_FROM_STEP"),
        ({"max_retries": 999}, 400, "JOBS.INVALID_RETRY_POLICY"),
        ({"input": None}, 400, "API.VALIDATION_ERROR"),
        ({"max_retry": 2}, 400, "API.VALIDATION_ERROR"),  # a typo is not silently ignored
        ({"from_step": "first"}, 400, "API.VALIDATION_ERROR"),
        ([1, 2], 400, "API.VALIDATION_ERROR"),
    ],
)
def test_an_invalid_retry_is_refused_and_changes_nothing(api, mine, body, status, code):
    dead = mine()
    assert error_code(api.post(f"{URL}{dead.id}/retry/", body, format="json"), status) == code
    dead.refresh_from_db()
    assert dead.state == "open"


def test_dismiss_with_a_note_then_again_is_a_409(api, user, mine):
    dead = mine()
    response = api.post(f"{URL}{dead.id}/dismiss/", {"note": "known flaky"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["resolved_by"], body["note"]) == (
        "dismissed",
        user.username,
        "known flaky",
    )
    assert body["resolved_at"] is not None
    again = api.post(f"{URL}{dead.id}/dismiss/", {"note": "again"}, format="json")
    assert error_code(again, 409) == "DEADLETTER.ALREADY_DISMISSED"
    # A dismissed entry may still be retried (the operator changed their mind).
    assert api.post(f"{URL}{dead.id}/retry/").json()["state"] == "retried"
    assert error_code(api.post(f"{URL}{dead.id}/dismiss/"), 409) == "DEADLETTER.ALREADY_RETRIED"


def test_bulk_retry_by_ids_counts_and_ignores_entries_the_caller_cannot_see(api, mine):
    a, b = mine(), mine()
    retried = mine(state="retried", resolved_at=timezone.now())
    theirs = DeadLetterFactory()
    response = api.post(
        f"{URL}retry/",
        {"ids": [a.id, b.id, retried.id, theirs.id, 999999], "note": "batch"},
        format="json",
    )
    assert response.json() == {"selected": 3, "retried": 2, "skipped": 1}
    theirs.refresh_from_db()
    assert theirs.state == "open"
    assert set(
        DeadLetter.objects.filter(state="retried", note="batch").values_list("id", flat=True)
    ) == {a.id, b.id}


def test_bulk_retry_and_dismiss_by_group(api, mine):
    group = [mine(error=_error(f"GET http://10.0.0.{i}/ answered 503")) for i in range(3)]
    other = mine(error=_error("something else"))
    fingerprint = group[0].fingerprint
    response = api.post(f"{URL}dismiss/", {"group": fingerprint, "note": "outage"}, format="json")
    assert response.json() == {"selected": 3, "dismissed": 3, "skipped": 0}
    # A group selects open entries: nothing left to dismiss; a retry by ids still reaches them.
    response = api.post(f"{URL}dismiss/", {"group": fingerprint}, format="json")
    assert response.json() == {"selected": 0, "dismissed": 0, "skipped": 0}
    other.refresh_from_db()
    assert other.state == "open"
    response = api.post(f"{URL}retry/", {"ids": [d.id for d in group]}, format="json")
    assert response.json() == {"selected": 3, "retried": 3, "skipped": 0}


def test_bulk_retry_by_filter_selects_open_entries_unless_told(api, mine):
    permanent = [mine(reason="permanent") for _ in range(2)]
    mine(reason="permanent", state="dismissed", resolved_at=timezone.now())
    mine(reason="exhausted")
    response = api.post(f"{URL}retry/", {"filter": {"reason": ["permanent"]}}, format="json")
    assert response.json() == {"selected": 2, "retried": 2, "skipped": 0}
    assert set(Job.objects.filter(status="pending").values_list("id", flat=True)) == {
        d.job_id for d in permanent
    }
    response = api.post(
        f"{URL}retry/", {"filter": {"reason": "permanent", "state": "dismissed"}}, format="json"
    )
    assert response.json() == {"selected": 1, "retried": 1, "skipped": 0}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"note": "no selection"},
        {"ids": [1], "group": "abc"},
        {"filter": {}},
        {"filter": {"colour": "red"}},
        {"filter": {"reason": "bogus"}},
        {"ids": "1,2"},
        {"ids": [1], "extra": True},
    ],
)
def test_an_invalid_bulk_selection_is_a_400(api, body):
    response = api.post(f"{URL}retry/", body, format="json")
    assert error_code(response, 400) == "API.VALIDATION_ERROR"
