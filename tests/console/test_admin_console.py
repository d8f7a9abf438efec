"""The admin as an operator's console: what it shows, what it refuses, and its query counts."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deadletter.models import DeadLetter, DeadLetterAction
from deadletter.services import PURGE_TASK, dead_letter_schedule_purge
from executions.models import Execution, StepResult
from jobplatform.models import AuditEvent, ProcessHeartbeat
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory, _error
from tests.jobs.factories import JobFactory
from tests.jobs.schedules.conftest import make_schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, staff):
    """The admin role (not a superuser): it sees every owner's work; the operator and viewer
    roles are driven in a browser (test_browser.py)."""
    client.force_login(staff)
    return client


def attempt(job, n: int, *, status: str = "failed", **fields) -> Execution:
    started = timezone.now() - timedelta(minutes=10 - n)
    fields.setdefault(
        "finished_at", None if status == "running" else started + timedelta(seconds=2)
    )
    return Execution.objects.create(
        job=job, attempt=n, status=status, worker=f"w{n}@host", started_at=started,
        heartbeat_at=started, delivery_id=str(uuid.uuid4()), **fields,
    )  # fmt: skip


# --- nothing the services cannot do -----------------------------------------------------------


def test_no_delete_of_jobs_attempts_or_dead_letters(operator):
    running = JobFactory(status=Job.Status.RUNNING, attempts=1)
    execution = attempt(running, 1, status="running")
    dead = DeadLetterFactory()
    for url in (
        f"/admin/jobs/job/{running.id}/",
        f"/admin/executions/execution/{execution.id}/",
        f"/admin/deadletter/deadletter/{dead.id}/",
    ):
        page = operator.get(url + "change/")
        assert page.status_code == 200
        assert b'class="deletelink"' not in page.content
        assert b'name="_save"' not in page.content  # nothing to save: the row is read-only
        assert operator.post(url + "delete/", {"post": "yes"}).status_code == 403
    for listing in ("/admin/jobs/job/", "/admin/executions/execution/"):
        assert b"delete_selected" not in operator.get(listing).content
    assert b"delete_selected" not in operator.get("/admin/deadletter/deadletter/").content
    assert Execution.objects.filter(id=execution.id).exists()
    assert DeadLetter.objects.filter(id=dead.id, state="open").exists()
    assert Job.objects.get(id=running.id).status == Job.Status.RUNNING


def test_cancel_in_the_admin_goes_through_the_service_and_is_audited(operator, staff):
    queued = JobFactory(status=Job.Status.QUEUED)
    done = JobFactory(status=Job.Status.SUCCEEDED)
    response = operator.post(
        "/admin/jobs/job/",
        {"action": "cancel_jobs", "_selected_action": [str(queued.id), str(done.id)],
         "note": "customer asked"},
        follow=True,
    )  # fmt: skip
    assert b"Cancelled 1 job(s)." in response.content
    assert b"1 job(s) had already finished" in response.content
    [event] = AuditEvent.objects.filter(action=AuditEvent.Action.JOB_CANCELLED)
    assert (event.subject, event.actor, event.actor_name, event.details) == (
        f"job {queued.id}", staff, staff.username, {"note": "customer asked"},
    )  # fmt: skip
    assert Job.objects.get(id=done.id).status == Job.Status.SUCCEEDED
    page = operator.get(f"/admin/jobs/job/{queued.id}/change/").content.decode()
    assert "customer asked" in page and staff.username in page


def test_beat_rows_of_the_platform_are_read_only(operator):
    dead_letter_schedule_purge()
    purge = PeriodicTask.objects.get(name=PURGE_TASK)
    page = operator.get(f"/admin/django_celery_beat/periodictask/{purge.id}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    response = operator.post(
        f"/admin/django_celery_beat/periodictask/{purge.id}/change/",
        {"name": PURGE_TASK, "task": PURGE_TASK, "enabled": ""},
    )
    assert response.status_code == 403
    assert (
        operator.post(
            f"/admin/django_celery_beat/periodictask/{purge.id}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    operator.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [purge.id]},
    )
    purge.refresh_from_db()
    assert purge.enabled
    crontab = f"/admin/django_celery_beat/crontabschedule/{purge.crontab_id}/delete/"
    assert operator.post(crontab, {"post": "yes"}).status_code == 403


# --- finding a job and reading it -------------------------------------------------------------


def test_search_by_job_id_task_id_trace_id_name_and_error_text(operator):
    failed = JobFactory(
        name="invoice-sync", status=Job.Status.FAILED,
        last_error={"type": "TransientStepError", "message": "connection refused by billing"},
    )  # fmt: skip
    execution = attempt(failed, 1)
    other = JobFactory(name="other", status=Job.Status.SUCCEEDED)

    def found(term: str) -> set[uuid.UUID]:
        page = operator.get("/admin/jobs/job/", {"q": term})
        assert page.status_code == 200
        return {job.id for job in page.context["cl"].result_list}

    assert found(str(failed.id)) == {failed.id}
    assert found(execution.delivery_id) == {failed.id}
    assert found(failed.trace_id) == {failed.id}
    assert found("invoice-sync") == {failed.id}
    assert found("refused by billing") == {failed.id}
    assert found(str(other.id)) == {other.id}
    assert found("nothing-like-it") == set()
    tasks = operator.get("/admin/executions/execution/", {"q": execution.delivery_id})
    assert list(tasks.context["cl"].result_list) == [execution]


def test_the_job_page_reads_as_a_timeline_in_utc(operator):
    job = JobFactory(status=Job.Status.FAILED, attempts=2)
    first = attempt(
        job, 1, retry_at=timezone.now() - timedelta(minutes=5), will_retry=True,
        error=_error("disk <full>"),
    )  # fmt: skip
    StepResult.objects.create(
        execution=first, index=0, type="log", status="failed", error=_error("disk <full>"),
        started_at=first.started_at, duration_ms=12.5,
    )  # fmt: skip
    second = attempt(job, 2, status="succeeded")
    StepResult.objects.create(
        execution=second, index=0, type="log", status="succeeded", output={"rows": 42},
        started_at=second.started_at, duration_ms=3.0,
    )  # fmt: skip
    dead = DeadLetterFactory(job=job)
    html = operator.get(f"/admin/jobs/job/{job.id}/change/").content.decode()
    assert 'id="attempt-1"' in html and 'id="attempt-2"' in html
    assert "w1@host" in html and first.delivery_id in html
    started = timezone.localtime(first.started_at)
    assert f"started {started:%Y-%m-%d %H:%M:%S} UTC" in html  # to the second, zone stated
    assert "took 2.000 s" in html
    assert f"retry chosen for {first.retry_at:%Y-%m-%d %H:%M:%S} UTC" in html
    assert '<pre class="traceback"' in html and "Traceback (most recent call last):" in html
    assert "disk &lt;full&gt;" in html and "disk <full>" not in html  # escaped
    assert "&quot;rows&quot;: 42" in html  # a step's output inline
    assert f"/admin/deadletter/deadletter/{dead.id}/change/" in html


def test_summary_of_queues_on_the_index_and_the_job_list(operator):
    now = timezone.now()
    JobFactory(queue="mail", run_at=now - timedelta(minutes=3))  # due for 3 minutes
    JobFactory(queue="mail", run_at=now + timedelta(hours=1))  # scheduled
    JobFactory(queue="mail", status=Job.Status.RUNNING)
    JobFactory(queue="mail", status=Job.Status.SUCCEEDED, finished_at=now)
    DeadLetterFactory(job=JobFactory(queue="mail", status=Job.Status.FAILED, finished_at=now))
    for url in ("/admin/", "/admin/jobs/job/"):
        html = operator.get(url).content.decode()
        row = html[html.index('<tr data-queue="mail">') :]
        row = row[: row.index("</tr>")]
        assert '<td class="depth">1</td>' in row
        assert '<td class="oldest-due">3m 0' in row  # 3m 0Xs
        assert '<td class="failure-rate">50.0%</td>' in row
        assert "state__exact=open&amp;job__queue=mail" in row and ">1</a>" in row
        assert "every time in this admin is UTC" in html


def test_dead_letters_by_fingerprint_retried_as_a_group(operator, staff):
    same = [DeadLetterFactory(message=f"timeout after {n}s") for n in (3, 5)]
    lone = DeadLetterFactory(message="no such table")
    page = operator.get("/admin/deadletter/deadletter/groups/")
    html = page.content.decode()
    assert page.status_code == 200
    assert html.index(same[0].fingerprint) < html.index(lone.fingerprint)  # the largest first
    operator.post(
        "/admin/deadletter/deadletter/groups/",
        {"fingerprint": same[0].fingerprint, "action": "retry", "note": "fixed upstream"},
    )
    assert {d.state for d in DeadLetter.objects.filter(id__in=[d.id for d in same])} == {"retried"}
    assert DeadLetter.objects.get(id=lone.id).state == "open"
    assert DeadLetterAction.objects.filter(kind="retry", actor=staff).count() == 2


def test_retry_with_changes_and_the_link_to_the_next_entry(operator):
    dead = DeadLetterFactory(job=JobFactory(status=Job.Status.FAILED, input={"n": 1}, next_step=0))
    url = f"/admin/deadletter/deadletter/{dead.id}/retry/"
    refused = operator.post(url, {"input": '{"n": 2}', "from_step": "3", "note": ""})
    assert b"DEADLETTER.INVALID_FROM_STEP" in refused.content
    assert DeadLetter.objects.get(id=dead.id).state == "open"  # nothing changed
    response = operator.post(
        url, {"input": json.dumps({"n": 2}), "max_retries": "5", "note": "bad input"}
    )
    assert response.status_code == 302
    job = Job.objects.get(id=dead.job_id)
    assert (job.status, job.input, job.max_retries) == ("pending", {"n": 2}, 5)
    edit = DeadLetterAction.objects.get(dead_letter=dead, kind="edit")
    assert edit.details["input"] == {"from": {"n": 1}, "to": {"n": 2}}
    # The job fails again: the retried entry leads to the new one.
    Job.objects.filter(id=job.id).update(status=Job.Status.FAILED)
    again = DeadLetterFactory(job=job)
    html = operator.get(f"/admin/deadletter/deadletter/{dead.id}/change/").content.decode()
    assert f'href="/admin/deadletter/deadletter/{again.id}/change/" rel="next"' in html


def test_a_paused_schedule_shows_paused_without_next_runs(operator, user):
    from jobs.schedules.services import schedule_pause

    schedule = make_schedule(user, now=timezone.now(), name="nightly")
    schedule_pause(schedule_id=schedule.id, note="holiday")
    html = operator.get("/admin/jobs/schedule/").content.decode()
    row = html[html.index("nightly") :]
    assert '<span class="paused">paused</span> holiday' in row[: row.index("</tr>")]


def test_the_workers_page_lists_last_heartbeats(operator):
    job = JobFactory(status=Job.Status.RUNNING, attempts=1)
    running = attempt(job, 1, status="running")
    beat = timezone.now()
    Execution.objects.filter(id=running.id).update(heartbeat_at=beat)
    attempt(JobFactory(status=Job.Status.FAILED, attempts=2), 2)
    # An idle worker is listed by its liveness row alone; a busy one shows both.
    idle_beat = beat - timedelta(seconds=7)
    _liveness("w3@host", idle_beat)
    _liveness("w1@host", beat - timedelta(seconds=3))
    html = operator.get("/admin/workers/").content.decode()
    row = _row(html, "w1@host")
    assert f"{timezone.localtime(beat):%Y-%m-%d %H:%M:%S}" in row
    assert f"{timezone.localtime(beat - timedelta(seconds=3)):%Y-%m-%d %H:%M:%S}" in row
    assert "<td>1</td>" in row  # running now
    assert "w2@host" in html
    idle = _row(html, "w3@host")
    assert idle.count(f"{timezone.localtime(idle_beat):%Y-%m-%d %H:%M:%S}") == 2
    assert "(silent)" not in idle


def _liveness(name: str, beat_at: datetime) -> None:
    ProcessHeartbeat.objects.create(
        role=ProcessHeartbeat.Role.WORKER, name=name, hostname="host", pid=1,
        started_at=beat_at, beat_at=beat_at,
    )  # fmt: skip


def _row(html: str, text: str) -> str:
    row = html[html.index(text) :]
    return row[: row.index("</tr>")]


# --- no N+1: a page costs the same queries for 3 rows as for 40 -------------------------------


def _many_rows(count: int) -> None:
    for n in range(count):
        job = JobFactory(status=Job.Status.FAILED, attempts=1, queue=f"q{n % 3}")
        attempt(job, 1)
        DeadLetterFactory(job=job)
        _liveness(f"idle-{uuid.uuid4().hex[:8]}@host", timezone.now())


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/jobs/job/",
        "/admin/jobs/job/?q=boom",
        "/admin/executions/execution/",
        "/admin/deadletter/deadletter/",
        "/admin/deadletter/deadletter/groups/",
        "/admin/jobs/schedule/",
        "/admin/workers/",
    ],
)
def test_list_pages_make_no_query_per_row(operator, user, url, django_assert_max_num_queries):
    _many_rows(3)
    for n in range(3):
        make_schedule(user, now=timezone.now(), name=f"s{n}")
    with django_assert_max_num_queries(30) as few:
        assert operator.get(url).status_code == 200
    _many_rows(40)
    for n in range(3, 40):
        make_schedule(user, now=timezone.now(), name=f"s{n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert operator.get(url).status_code == 200
