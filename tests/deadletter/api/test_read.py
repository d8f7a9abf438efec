from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Execution, StepResult
from tests.conftest import client_for
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory, _error

pytestmark = pytest.mark.django_db

URL = "/api/v1/dead-letters/"


def ids(response):
    assert response.status_code == 200, response.content
    return [entry["id"] for entry in response.json()["results"]]


def test_a_user_sees_the_dead_letters_of_their_own_jobs_and_admins_all(api, user, admin):
    mine = DeadLetterFactory(job=FailedJobFactory(owner=user))
    theirs = DeadLetterFactory()
    assert ids(api.get(URL)) == [mine.id]
    for response in (
        api.get(f"{URL}{theirs.id}/"),
        api.post(f"{URL}{theirs.id}/retry/", {}, format="json"),
        api.post(f"{URL}{theirs.id}/dismiss/", {}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "DEADLETTER.NOT_FOUND"
    theirs.refresh_from_db()
    assert theirs.state == "open"
    assert set(ids(client_for(admin).get(URL))) == {mine.id, theirs.id}


def test_an_unknown_id_is_a_404(api):
    response = api.get(f"{URL}999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "DEADLETTER.NOT_FOUND"


def test_the_list_filters_by_every_documented_parameter(api, user, admin):
    now = timezone.now()
    job = lambda **kw: FailedJobFactory(owner=user, **kw)  # noqa: E731
    permanent_http = DeadLetterFactory(
        job=job(queue="dispatch-probe"),
        reason="permanent",
        error=_error("GET http://x/1 answered 404", step_type="http", error_type="Permanent"),
    )
    exhausted_old = DeadLetterFactory(job=job(), created_at=now - timedelta(days=2))
    dismissed = DeadLetterFactory(job=job(), state="dismissed", resolved_at=now)
    other_owner = DeadLetterFactory()
    get = lambda query, client=api: set(ids(client.get(f"{URL}?{query}")))  # noqa: E731
    assert get("reason=permanent") == {permanent_http.id}
    assert get("reason=permanent,exhausted") == {permanent_http.id, exhausted_old.id, dismissed.id}
    assert get("state=dismissed") == {dismissed.id}
    assert get("state=open") == {permanent_http.id, exhausted_old.id}
    assert get("queue=dispatch-probe") == {permanent_http.id}
    assert get("error_type=Permanent") == {permanent_http.id}
    assert get("error_code=STEP.FAIL_TRANSIENT") == {
        permanent_http.id,
        exhausted_old.id,
        dismissed.id,
    }
    assert get("step_type=http") == {permanent_http.id}
    assert get("message_contains=ANSWERED") == {permanent_http.id}
    assert get(f"fingerprint={permanent_http.fingerprint}") == {permanent_http.id}
    assert get(f"job={exhausted_old.job_id}") == {exhausted_old.id}
    cut = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert get(f"created_before={cut}") == {exhausted_old.id}
    assert get(f"created_after={cut}") == {permanent_http.id, dismissed.id}
    assert get(f"owner={user.username}") == {permanent_http.id, exhausted_old.id, dismissed.id}
    admin_api = client_for(admin)
    assert get(f"owner={other_owner.job.owner.username}", admin_api) == {other_owner.id}


@pytest.mark.parametrize(
    "query", ["reason=bogus", "state=closed", "created_after=yesterday", "job=not-a-uuid"]
)
def test_an_invalid_filter_is_a_400(api, query):
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "API.VALIDATION_ERROR"


def test_cursor_pagination_walks_every_entry_once_even_with_equal_times(api, user):
    now = timezone.now()
    entries = [
        DeadLetterFactory(
            job=FailedJobFactory(owner=user), created_at=now - timedelta(seconds=i // 3)
        )
        for i in range(8)
    ]
    seen, url = [], f"{URL}?page_size=3"
    while url:
        page = api.get(url).json()
        seen += [entry["id"] for entry in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(e.id for e in entries)
    assert len(seen) == len(set(seen))


def test_listing_costs_a_fixed_number_of_queries(api, user, django_assert_max_num_queries):
    for _ in range(15):
        DeadLetterFactory(job=FailedJobFactory(owner=user))
    with django_assert_max_num_queries(3):  # token lookup, the page; no query per entry
        assert len(ids(api.get(URL))) == 15


def test_a_summary_links_to_its_actions_and_its_job(api, user):
    dead = DeadLetterFactory(job=FailedJobFactory(owner=user))
    [entry] = api.get(URL).json()["results"]
    assert entry["job"] == {
        "id": str(dead.job_id),
        "name": dead.job.name,
        "status": "failed",
        "queue": "default",
        "owner": user.username,
    }
    assert entry["links"]["retry"].endswith(f"{URL}{dead.id}/retry/")
    assert entry["links"]["job"].endswith(f"/api/v1/jobs/{dead.job_id}/")
    assert "traceback" not in entry.get("error", {})


def test_the_detail_has_the_traceback_the_snapshot_the_trail_and_every_attempt(api, user):
    job = FailedJobFactory(owner=user, attempts=2, input={"k": 1})
    dead = DeadLetterFactory(job=job, attempts=2)
    for attempt in (1, 2):
        execution = Execution.objects.create(
            job=job,
            attempt=attempt,
            status="failed",
            worker=f"w{attempt}",
            started_at=timezone.now(),
            error=dead.error,
        )
        StepResult.objects.create(
            execution=execution,
            index=0,
            type="log",
            status="failed",
            error=dead.error,
            started_at=timezone.now(),
            duration_ms=1.0,
        )
    api.post(f"{URL}{dead.id}/dismiss/", {"note": "seen it"}, format="json")
    body = api.get(f"{URL}{dead.id}/").json()
    assert body["error"]["traceback"].startswith("Traceback (most recent call last)")
    assert (body["steps"], body["input"]) == (job.steps, {"k": 1})
    assert body["retry_policy"]["max_retries"] == job.max_retries
    assert [e["attempt"] for e in body["executions"]] == [1, 2]
    assert body["executions"][1]["steps"][0]["status"] == "failed"
    [action] = body["actions"]
    assert (action["kind"], action["actor"], action["note"]) == (
        "dismiss",
        user.username,
        "seen it",
    )
    assert (body["state"], body["resolved_by"], body["note"]) == (
        "dismissed",
        user.username,
        "seen it",
    )


def test_groups_count_open_entries_by_fingerprint_largest_first(api, user):
    now = timezone.now()
    job = lambda: FailedJobFactory(owner=user)  # noqa: E731
    http = [
        DeadLetterFactory(
            job=job(),
            error=_error(f"GET http://10.0.0.{i}/o/{i} answered 503", step_type="http"),
            created_at=now - timedelta(minutes=i),
        )
        for i in range(3)
    ]
    DeadLetterFactory(
        job=job(),
        error=_error("GET http://10.9.9.9/o/7 answered 503", step_type="http"),
        state="dismissed",
        resolved_at=now,
    )
    single = DeadLetterFactory(job=job(), error=_error("disk full"))
    DeadLetterFactory()  # another user's: not counted
    body = api.get(f"{URL}groups/").json()
    first, second = body["results"]
    assert (first["fingerprint"], first["count"]) == (http[0].fingerprint, 3)
    assert (first["step_type"], first["error_type"]) == ("http", "TransientStepError")
    assert first["message_pattern"] == "GET http://<ip>/o/<n> answered <n>"
    assert first["first_seen"] == http[2].created_at.isoformat().replace("+00:00", "Z")
    assert first["last_seen"] == http[0].created_at.isoformat().replace("+00:00", "Z")
    assert first["example"]["id"] == max(d.id for d in http)
    assert first["example"]["url"].endswith(f"{URL}{first['example']['id']}/")
    assert (second["fingerprint"], second["count"]) == (single.fingerprint, 1)
    everything = api.get(f"{URL}groups/?state=open,dismissed").json()["results"]
    assert everything[0]["count"] == 4
    assert len(api.get(f"{URL}groups/?limit=1").json()["results"]) == 1
    response = api.get(f"{URL}groups/?limit=0")
    assert response.status_code == 400


def test_stats_report_open_dead_letters_by_reason_and_queue(api, user, admin):
    job = lambda queue="default": FailedJobFactory(owner=user, queue=queue)  # noqa: E731
    DeadLetterFactory(job=job(), reason="permanent")
    DeadLetterFactory(job=job(), reason="permanent")
    DeadLetterFactory(job=job("dispatch-probe"), reason="exhausted")
    DeadLetterFactory(job=job(), reason="lost", state="dismissed", resolved_at=timezone.now())
    DeadLetterFactory(reason="timeout")  # another user's
    assert api.get(f"{URL}stats/").json() == {
        "open": 3,
        "by_reason": {"exhausted": 1, "permanent": 2},
        "by_queue": {"default": 2, "dispatch-probe": 1},
        "by_reason_and_queue": [
            {"reason": "exhausted", "queue": "dispatch-probe", "count": 1},
            {"reason": "permanent", "queue": "default", "count": 2},
        ],
    }
    assert client_for(admin).get(f"{URL}stats/").json()["by_reason"]["timeout"] == 1
