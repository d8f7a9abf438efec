"""Secret step params, credentials in logs and in failure messages are redacted where jobs,
schedules, dead letters and logs are shown; the worker still gets the real values."""

from __future__ import annotations

import logging

import pytest

from deadletter.services import dead_letter_record
from jobplatform.log_redaction import RedactSecrets, redact
from jobs.redaction import REDACTED, redact_steps, redact_value
from jobs.steps import AttemptError, get_step
from tests.jobs.factories import JobFactory
from tests.support import await_finished, submit_job

SECRET = "s3cr3t-value-123"
HEADERS = {"Authorization": f"Bearer {SECRET}", "X-Trace": "visible"}


def http_steps(url: str) -> list[dict]:
    return [{"type": "http", "params": {"url": url, "headers": HEADERS}}]


def test_write_only_parts_of_a_schema_are_redacted():
    schema = get_step("vault").schema
    params = {"user": "u", "password": "p", "extra": {"a": 1, "b": [2]}}
    assert redact_value(schema, params) == {
        "user": "u",
        "password": REDACTED,
        "extra": {"a": REDACTED, "b": REDACTED},
    }
    steps = [{"type": "vault", "params": params}, {"type": "nope", "params": {"password": "p"}}]
    assert redact_steps(steps)[0]["params"]["password"] == REDACTED
    assert redact_steps(steps)[1] == steps[1]  # an unknown type: nothing to go by
    assert steps[0]["params"]["password"] == "p"  # the input is not changed


def test_the_http_steps_header_values_are_secret_and_their_names_are_not():
    [step] = redact_steps(http_steps("https://api.example/"))
    assert step["params"]["headers"] == {"Authorization": REDACTED, "X-Trace": REDACTED}
    assert step["params"]["url"] == "https://api.example/"


@pytest.mark.django_db
def test_job_and_schedule_responses_redact_secret_params(api):
    response = api.post(
        "/api/v1/jobs/", {"name": "j", "steps": http_steps("https://api.example/")}, format="json"
    )
    assert response.status_code == 201
    assert SECRET not in response.content.decode()
    detail = api.get(response.json()["links"]["self"])
    assert SECRET not in detail.content.decode()
    assert detail.json()["steps"][0]["params"]["headers"]["Authorization"] == REDACTED
    schedule = api.post(
        "/api/v1/schedules/",
        {"name": "s", "cron": "0 * * * *", "job": {"steps": http_steps("https://a.example/")}},
        format="json",
    )
    assert schedule.status_code == 201, schedule.content
    assert SECRET not in schedule.content.decode()
    assert SECRET not in api.get("/api/v1/schedules/").content.decode()


@pytest.mark.django_db
def test_the_dead_letter_snapshot_and_its_api_and_admin_pages_redact_secret_params(
    api, user, client
):
    job = JobFactory(owner=user, status="failed", steps=http_steps("https://api.example/"))
    error = AttemptError(type="PermanentStepError", code="STEP.HTTP_STATUS", message="m",
                         permanent=True, step_index=0, step_type="http")  # fmt: skip
    dead = dead_letter_record(job_id=job.id, reason="permanent", error=error, attempts=1)
    dead.refresh_from_db()
    assert dead.steps[0]["params"]["headers"]["Authorization"] == REDACTED
    assert SECRET not in api.get(f"/api/v1/dead-letters/{dead.id}/").content.decode()
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    for page in (
        f"/admin/jobs/job/{job.id}/change/",
        f"/admin/deadletter/deadletter/{dead.id}/change/",
    ):
        response = client.get(page)
        assert response.status_code == 200
        assert SECRET not in response.content.decode(), page
        assert REDACTED in response.content.decode(), page


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"Authorization: Token {SECRET}", "Authorization: Token [redacted]"),
        (f"{{'Authorization': 'Bearer {SECRET}'}}", "'Bearer [redacted]'"),
        (f"X-Api-Key: {SECRET}", "X-Api-Key: [redacted]"),
        (f'{{"password": "{SECRET}"}}', '"password": "[redacted]"'),
        (f"GET https://bob:{SECRET}@api.example/x", "https://[redacted]@api.example/x"),
        (f"Api-Key {SECRET}", "Api-Key [redacted]"),
    ],
)
def test_log_lines_lose_their_credentials(line, kept):
    assert SECRET not in redact(line)
    assert kept in redact(line)


def test_the_web_processes_log_handlers_redact():
    handlers = logging.getLogger().handlers
    assert any(isinstance(f, RedactSecrets) for h in handlers for f in h.filters)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_the_real_secret_and_shows_none(platform, api, http_target):
    job_id = submit_job(
        api,
        [
            {"type": "log", "params": {"message": f"calling with Authorization: Bearer {SECRET}"}},
            *http_steps(f"{http_target.url}/ok/redaction"),
            {"type": "vault", "params": {"password": SECRET}},
        ],
    )
    job = await_finished(api, job_id)
    assert job["status"] == "succeeded", job
    assert http_target.headers["/ok/redaction"]["Authorization"] == f"Bearer {SECRET}"
    assert job["result"] == {"password_length": len(SECRET)}
    platform.await_worker_log("calling with Authorization: Bearer [redacted]")
    assert SECRET not in platform.worker_output()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_text_postgresql_cannot_store_fails_the_step_not_the_worker(platform, api):
    output = await_finished(
        api, submit_job(api, [{"type": "unstorable", "params": {"where": "output"}}])
    )
    assert output["status"] == "failed"
    assert output["last_error"]["code"] == "STEP.OUTPUT_NOT_STORABLE"
    error = await_finished(
        api, submit_job(api, [{"type": "unstorable", "params": {"where": "error"}}])
    )
    assert error["status"] == "failed"
    assert error["last_error"]["message"] == "bad\ufffdnews \ufffd"
