"""The operator's main paths through the admin in a real headless browser: Playwright driving
Debian's chromium (.ci/run installs it) against the web process as deployed (``live_api``).

An operator signs in, finds a job by its id, cancels it with a note and reads the note in the
job's audit trail; retries a group of dead letters and one entry with a changed input. A viewer
signs in to the same pages and finds nothing to act with.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from deadletter.models import DeadLetter
from jobplatform.models import AuditEvent
from jobplatform.roles import Role
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory
from tests.factories import UserFactory, with_role
from tests.jobs.factories import JobFactory

# The server sees only committed rows. Playwright's sync API keeps an event loop in this thread,
# which Django would take for async code around the ORM calls made between two page actions.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (apt-get install chromium; .ci/run does)"
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Until the loop ends, after the last test's database flush too.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def staff_with(role: Role) -> Any:
    user = with_role(UserFactory(is_staff=True), role)
    user.set_password(PASSWORD)
    user.save()
    return user


def signed_in(browser: Browser, live_api: str, user: Any) -> Page:
    page = browser.new_page(base_url=live_api)
    page.goto("/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_api}/admin/")
    return page


def test_an_operator_finds_cancels_and_reads_the_audit_trail(browser: Browser, live_api: str):
    operator = staff_with(Role.OPERATOR)
    queued: Any = JobFactory(owner=operator, status=Job.Status.QUEUED, name="nightly-report")
    JobFactory(owner=operator, status=Job.Status.QUEUED, name="other")
    page = signed_in(browser, live_api, operator)

    page.goto("/admin/jobs/job/")
    page.fill("#searchbar", str(queued.id))
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "cancel_jobs")
    page.fill("input[name=note]", "customer asked")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 1 job(s).")

    page.click("#result_list tbody a")  # the job's page
    expect(page.locator("table.audit-trail")).to_contain_text("customer asked")
    trail = page.locator("table.audit-trail").inner_text()
    assert "job.cancelled" in trail and "customer asked" in trail and operator.username in trail
    expect(page.locator("text=attempts (times UTC)")).to_be_visible()
    assert Job.objects.get(id=queued.id).status == Job.Status.CANCELLED
    [event] = AuditEvent.objects.filter(subject=f"job {queued.id}")
    assert (event.actor_id, event.details) == (operator.id, {"note": "customer asked"})


def test_an_operator_retries_a_group_and_one_entry_with_changes(browser: Browser, live_api: str):
    operator = staff_with(Role.OPERATOR)
    same: list[Any] = [
        DeadLetterFactory(job__owner=operator, message=f"timeout after {n}s") for n in (3, 5)
    ]
    lone: Any = DeadLetterFactory(job__owner=operator, message="no such table", job__input={"n": 1})
    page = signed_in(browser, live_api, operator)

    page.goto("/admin/deadletter/deadletter/groups/")
    group = page.locator(f"tr.group[data-fingerprint='{same[0].fingerprint}']")
    expect(group.locator("td").first).to_have_text("2")
    group.locator("input[name=note]").fill("fixed upstream")
    group.locator("button[value=retry]").click()
    expect(page.locator(".messagelist")).to_contain_text("Retried 2 dead letter(s)")

    lone_group = page.locator(f"tr.group[data-fingerprint='{lone.fingerprint}']")
    lone_group.locator("a:has-text('with changes')").click()
    page.fill("textarea[name=input]", json.dumps({"n": 2}))
    page.fill("input[name=note]", "bad input")
    page.click("#retry-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text(f"Retried dead letter {lone.id}")

    assert {d.state for d in DeadLetter.objects.filter(id__in=[d.id for d in same])} == {"retried"}
    job = Job.objects.get(id=lone.job_id)
    # Back in the queue with the new input (a session platform, if one runs, may have run it).
    assert job.input == {"n": 2} and job.status != Job.Status.FAILED


def test_a_viewer_sees_but_cannot_act(browser: Browser, live_api: str):
    viewer = staff_with(Role.VIEWER)
    queued: Any = JobFactory(owner=viewer, status=Job.Status.QUEUED)
    dead: Any = DeadLetterFactory(job__owner=viewer)
    page = signed_in(browser, live_api, viewer)

    page.goto("/admin/jobs/job/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    # The queues' summary counts every owner's work: the admin role's only.
    assert page.locator("#operator-summary").count() == 0
    assert page.locator("select[name=action]").count() == 0  # no action offered
    page.goto(f"/admin/jobs/job/{queued.id}/change/")
    assert page.locator("input[name=_save]").count() == 0
    page.goto("/admin/deadletter/deadletter/groups/")
    assert page.locator(f"tr.group[data-fingerprint='{dead.fingerprint}']").count() == 1
    assert page.locator("button[value=retry]").count() == 0
    refused = page.goto(f"/admin/deadletter/deadletter/{dead.id}/retry/")
    assert refused is not None and refused.status == 403
    assert Job.objects.get(id=queued.id).status == Job.Status.QUEUED
    assert DeadLetter.objects.get(id=dead.id).state == "open"
