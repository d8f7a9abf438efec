"""Dead letters end to end through the REST API: a real dispatcher and a real Celery worker."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from deadletter.models import DeadLetter
from jobplatform.celery import app as celery_app
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory, _error
from tests.support import await_finished as finished
from tests.support import job_detail, wait_for
from tests.support import submit_job as submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/dead-letters/"
PERMANENT_ONCE = {"type": "fail", "params": {"mode": "permanent", "times": 1, "message": "bad"}}


def dead_letters(api, query=""):
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def the_dead_letter(api, job_id):
    [entry] = dead_letters(api, f"job={job_id}&state=open")
    response = api.get(f"{URL}{entry['id']}/")
    assert response.status_code == 200
    return response.json()


def test_a_permanent_failure_is_dead_lettered_and_a_retry_resumes_at_the_failed_step(platform, api):
    job_id = submit(api, [{"type": "log", "params": {"message": "first"}}, PERMANENT_ONCE])
    assert finished(api, job_id)["status"] == "failed"
    dead = the_dead_letter(api, job_id)
    assert (dead["reason"], dead["state"], dead["attempts"]) == ("permanent", "open", 1)
    assert (dead["error_type"], dead["error_code"]) == ("PermanentStepError", "STEP.FAIL_PERMANENT")
    assert (dead["step_type"], dead["step_index"], dead["error_message"]) == ("fail", 1, "bad")
    assert "PermanentStepError: bad" in dead["error"]["traceback"]
    assert dead["worker"].startswith("test-worker-")
    assert dead["steps"][1] == {"type": "fail", "params": PERMANENT_ONCE["params"]}
    assert dead["retry_policy"]["max_retries"] == 3
    assert [e["attempt"] for e in dead["executions"]] == [1]

    response = api.post(f"{URL}{dead['id']}/retry/", {"note": "try again"}, format="json")
    assert response.status_code == 200, response.content
    job = finished(api, job_id)
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2  # the numbering continues
    # The retry resumed at the failed step: step 0 ran once, in attempt 1.
    assert [[s["index"] for s in e["steps"]] for e in job["executions"]] == [[0, 1], [1]]
    after = api.get(f"{URL}{dead['id']}/").json()
    assert (after["state"], after["job"]["status"]) == ("retried", "succeeded")
    assert [e["attempt"] for e in after["executions"]] == [1, 2]
    assert [(a["kind"], a["note"]) for a in after["actions"]] == [("retry", "try again")]
    again = api.post(f"{URL}{dead['id']}/retry/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DEADLETTER.JOB_NOT_FAILED"


def test_exhausted_retries_are_dead_lettered_and_a_retry_gets_a_fresh_budget(platform, api):
    # Fails on attempts 1 to 4. With max_retries=2 the job dies after attempt 3; the retry's
    # fresh budget of 3 attempts lets attempt 4 fail once more and attempt 5 succeed.
    fail = {"type": "fail", "params": {"message": "flaky upstream", "times": 4}}
    job_id = submit(api, [fail], max_retries=2)
    assert finished(api, job_id)["status"] == "failed"
    dead = the_dead_letter(api, job_id)
    assert (dead["reason"], dead["attempts"], dead["error_type"]) == (
        "exhausted",
        3,
        "TransientStepError",
    )
    assert [e["attempt"] for e in dead["executions"]] == [1, 2, 3]

    assert api.post(f"{URL}{dead['id']}/retry/").status_code == 200
    job = finished(api, job_id)
    assert job["status"] == "succeeded", job
    assert [e["attempt"] for e in job["executions"]] == [1, 2, 3, 4, 5]
    assert [e["status"] for e in job["executions"]][3:] == ["failed", "succeeded"]
    assert job["executions"][3]["will_retry"] is True
    assert len(dead_letters(api, f"job={job_id}")) == 1  # no new death


def test_a_job_that_dies_again_after_a_retry_gets_a_new_entry(platform, api):
    job_id = submit(api, [{"type": "fail", "params": {"mode": "permanent"}}])
    finished(api, job_id)
    first = the_dead_letter(api, job_id)
    api.post(f"{URL}{first['id']}/retry/")
    wait_for(
        lambda: len(dead_letters(api, f"job={job_id}")) == 2, what="the job to die a second time"
    )
    second = the_dead_letter(api, job_id)
    assert (second["attempts"], [e["attempt"] for e in second["executions"]]) == (2, [1, 2])
    stale = api.post(f"{URL}{first['id']}/retry/")
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "DEADLETTER.ALREADY_RETRIED"
    assert stale.json()["error"]["details"]["current_dead_letter"] == second["id"]


def test_retry_from_a_step_with_an_edited_input_reuses_the_earlier_outputs(
    platform, api, http_target
):
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    job_id = submit(
        api,
        [
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{first}"}},
            {"type": "http", "params": {"url": f"{http_target.url}/ok/{second}"}},
            {"type": "reverse", "params": {"text": "abc"}},
            PERMANENT_ONCE,
        ],
        input={"region": "eu"},
    )
    assert finished(api, job_id)["status"] == "failed"
    dead = the_dead_letter(api, job_id)
    response = api.post(
        f"{URL}{dead['id']}/retry/",
        {"from_step": 1, "input": {"region": "us"}, "max_retries": 5, "note": "wrong region"},
        format="json",
    )
    assert response.status_code == 200, response.content
    edit = response.json()["actions"][0]
    assert edit["kind"] == "edit" and edit["note"] == "wrong region"
    assert edit["details"]["input"] == {"from": {"region": "eu"}, "to": {"region": "us"}}
    job = finished(api, job_id)
    assert job["status"] == "succeeded"
    assert (job["input"], job["max_retries"]) == ({"region": "us"}, 5)
    assert [s["index"] for s in job["executions"][1]["steps"]] == [1, 2, 3]
    assert http_target.count(f"/ok/{first}") == 1  # step 0's stored output was reused
    assert http_target.count(f"/ok/{second}") == 2
    # The reverse step read step 1's fresh output, which followed step 0's stored one.
    assert job["executions"][1]["steps"][1]["output"]["previous"]["body"]["hits"] == 2
    # The entry keeps the job as it was when it died.
    assert api.get(f"{URL}{dead['id']}/").json()["input"] == {"region": "eu"}


def test_dismissal_leaves_the_job_failed_and_out_of_the_open_counts(platform, api):
    job_id = submit(api, [{"type": "fail", "params": {"mode": "permanent"}}])
    finished(api, job_id)
    dead = the_dead_letter(api, job_id)
    assert api.get(f"{URL}stats/").json()["by_reason"] == {"permanent": 1}
    response = api.post(f"{URL}{dead['id']}/dismiss/", {"note": "expected"}, format="json")
    assert (response.status_code, response.json()["state"]) == (200, "dismissed")
    again = api.post(f"{URL}{dead['id']}/dismiss/", {"note": "twice"}, format="json")
    assert (again.status_code, again.json()["error"]["code"]) == (
        409,
        "DEADLETTER.ALREADY_DISMISSED",
    )
    assert job_detail(api, job_id)["status"] == "failed"
    assert api.get(f"{URL}stats/").json()["open"] == 0
    [entry] = dead_letters(api, "state=dismissed")
    assert (entry["id"], entry["note"]) == (dead["id"], "expected")


def test_a_thousand_dead_letters_retried_in_bulk_all_succeed(platform, api, user):
    count = 1000
    jobs = Job.objects.bulk_create(
        FailedJobFactory.build(
            owner=user, steps=[{"type": "log", "params": {"message": "x"}}], next_step=0
        )
        for _ in range(count)
    )
    DeadLetter.objects.bulk_create(
        DeadLetterFactory.build(job=job, error=_error("bulk outage 42", error_type="Outage"))
        for job in jobs
    )
    [group] = api.get(f"{URL}groups/").json()["results"]
    assert group["count"] == count
    began = time.monotonic()
    response = api.post(
        f"{URL}retry/", {"filter": {"error_type": "Outage"}, "note": "outage over"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"selected": count, "retried": count, "skipped": 0}
    wait_for(
        lambda: Job.objects.filter(status=Job.Status.SUCCEEDED).count() == count,
        timeout=180,
        what=f"{count} retried jobs to succeed",
    )
    print(f"\n{count} dead letters retried and run in {time.monotonic() - began:.1f}s")
    assert set(Job.objects.values_list("attempts", flat=True)) == {2}
    assert DeadLetter.objects.filter(state="retried", note="outage over").count() == count
    assert api.get(f"{URL}stats/").json()["open"] == 0


def test_the_purge_task_on_the_worker_keeps_open_entries(platform, api, user):
    long_ago = timezone.now() - timedelta(days=31)
    mine = lambda **kw: DeadLetterFactory(job=FailedJobFactory(owner=user), **kw)  # noqa: E731
    mine(state="retried", resolved_at=long_ago)
    mine(state="dismissed", resolved_at=long_ago)
    recent = mine(state="dismissed", resolved_at=timezone.now() - timedelta(days=1))
    ancient_open = mine(created_at=timezone.now() - timedelta(days=365))
    assert len(dead_letters(api)) == 4
    celery_app.send_task("deadletter.purge", queue="default")
    wait_for(lambda: len(dead_letters(api)) == 2, what="the purge to run on the worker")
    assert {e["id"] for e in dead_letters(api)} == {recent.id, ancient_open.id}
