from __future__ import annotations

import pytest

from deadletter.models import DeadLetter
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory, _error

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin):
    """An admin-role user (staff, not a superuser) logged in to the admin."""
    client.force_login(admin)
    return client


def test_the_list_filters_and_searches_error_messages(operator):
    disk = DeadLetterFactory(error=_error("disk full on /var/lib/x"), reason="permanent")
    DeadLetterFactory(error=_error("connection refused"))
    page = operator.get("/admin/deadletter/deadletter/?q=disk+full")
    assert page.status_code == 200
    assert b"disk full on /var/lib/x" in page.content
    assert b"connection refused" not in page.content
    page = operator.get("/admin/deadletter/deadletter/?reason__exact=permanent&state__exact=open")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert list(page.context["cl"].result_list) == [disk]


def test_the_detail_shows_the_traceback_readable_and_escaped(operator):
    dead = DeadLetterFactory(error=_error("<script>bad</script> happened"))
    page = operator.get(f"/admin/deadletter/deadletter/{dead.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<pre" in html and "Traceback (most recent call last):" in html
    assert "<script>bad</script>" not in html  # escaped
    assert "&lt;script&gt;bad&lt;/script&gt; happened" in html


def test_the_retry_and_dismiss_actions_go_through_the_services(operator, admin):
    to_retry = DeadLetterFactory()
    to_dismiss = DeadLetterFactory()
    response = operator.post(
        "/admin/deadletter/deadletter/",
        {"action": "retry_selected", "_selected_action": [to_retry.id], "note": "from admin"},
        follow=True,
    )
    assert b"Retried 1 dead letter(s); skipped 0." in response.content
    response = operator.post(
        "/admin/deadletter/deadletter/",
        {
            "action": "dismiss_selected",
            "_selected_action": [to_dismiss.id, to_retry.id],
            "note": "noise",
        },
        follow=True,
    )
    assert b"Dismissed 1 dead letter(s); skipped 1." in response.content
    to_retry.refresh_from_db()
    to_dismiss.refresh_from_db()
    assert (to_retry.state, to_retry.note, to_retry.resolved_by) == ("retried", "from admin", admin)
    assert Job.objects.get(id=to_retry.job_id).status == Job.Status.PENDING
    assert (to_dismiss.state, to_dismiss.note) == ("dismissed", "noise")
    # The audit trail shows on the entry's page.
    page = operator.get(f"/admin/deadletter/deadletter/{to_dismiss.id}/change/")
    assert b"noise" in page.content and admin.username.encode() in page.content
    assert DeadLetter.objects.filter(state="open").count() == 0
