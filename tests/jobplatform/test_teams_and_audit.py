"""Teams share work; role, team and bulk changes leave audit rows; the admin follows the roles."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from jobplatform.models import AuditEvent, Team
from jobplatform.roles import Role
from jobplatform.services import team_set_members
from jobs.models import Job
from tests.conftest import client_for
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory
from tests.factories import UserFactory, role_group, with_role
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_leaving_a_team_hides_its_work_again(user, admin):
    mate = with_role(UserFactory(), Role.OPERATOR)
    team = Team.objects.create(name="ops")
    team_set_members(team=team, members=[user, mate], actor=admin)
    job = JobFactory(owner=mate, status=Job.Status.PENDING)
    api = client_for(user)
    assert api.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 200
    team_set_members(team=team, members=[mate], actor=admin)
    api = client_for(type(user).objects.get(pk=user.pk))  # a new request loads teammates anew
    assert api.get(f"/api/v1/jobs/{job.id}/").status_code == 404
    added, removed = AuditEvent.objects.filter(action="team.members_changed").order_by("id")
    assert (added.actor, added.subject, added.details) == (
        admin, "team ops", {"added": sorted([user.username, mate.username]), "removed": []}
    )  # fmt: skip
    assert removed.details == {"added": [], "removed": [user.username]}


def test_a_bulk_dead_letter_action_is_audited_once(user):
    entries = [DeadLetterFactory(job=FailedJobFactory(owner=user)) for _ in range(3)]
    response = client_for(user).post(
        "/api/v1/dead-letters/dismiss/",
        {"ids": [e.id for e in entries], "note": "noise"},
        format="json",
    )
    assert response.json()["dismissed"] == 3
    [event] = AuditEvent.objects.filter(action="dead_letters.bulk_dismiss")
    assert event.actor == user and event.actor_name == user.username
    assert event.details == {"selected": 3, "done": 3, "skipped": 0, "note": "noise"}


def test_a_role_change_in_the_admin_user_page_is_audited(client, admin):
    target = with_role(UserFactory(), Role.VIEWER)
    client.force_login(admin)
    page = client.get(f"/admin/auth/user/{target.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        groups=[role_group(Role.OPERATOR).pk], user_permissions=[], is_active="on",
        date_joined_0=target.date_joined.date(), date_joined_1=target.date_joined.time(),
        last_login_0="", last_login_1="",
    )  # fmt: skip
    response = client.post(f"/admin/auth/user/{target.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(target.groups.values_list("name", flat=True)) == ["operator"]
    event = AuditEvent.objects.get(action="user.access_changed")
    assert (event.actor, event.subject) == (admin, f"user {target.username}")
    assert event.details == {"before": {"groups": ["viewer"]}, "after": {"groups": ["operator"]}}


def test_a_team_change_in_the_admin_is_audited(client, admin):
    member = UserFactory()
    client.force_login(admin)
    response = client.post("/admin/jobplatform/team/add/", {"name": "ops", "members": [member.pk]})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="team.members_changed")
    assert event.details == {"added": [member.username], "removed": []}
    listing = client.get("/admin/jobplatform/team/")
    assert b">ops<" in listing.content
    assert b'<td class="field-member_count">1</td>' in listing.content


def test_the_audit_trail_is_read_only_in_the_admin(client, admin):
    AuditEvent.objects.create(action="api_key.created", subject="key x of y")
    client.force_login(admin)
    assert client.get("/admin/jobplatform/auditevent/").status_code == 200
    event = AuditEvent.objects.get()
    page = client.get(f"/admin/jobplatform/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.get("/admin/jobplatform/auditevent/add/").status_code == 403
    assert client.post(f"/admin/jobplatform/auditevent/{event.pk}/delete/").status_code == 403


def test_an_operator_in_the_admin_sees_only_their_teams_jobs(client, user):
    user.is_staff = True
    user.save()
    mine, theirs = JobFactory(owner=user, name="mine-job"), JobFactory(name="their-job")
    client.force_login(user)
    listing = client.get("/admin/jobs/job/")
    assert b"mine-job" in listing.content and b"their-job" not in listing.content
    assert client.get(f"/admin/jobs/job/{theirs.id}/change/").status_code == 302  # not found
    assert client.get(f"/admin/jobs/job/{mine.id}/change/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 403  # users are the admin's


def test_a_viewer_in_the_admin_is_offered_no_action(client, viewer):
    viewer.is_staff = True
    viewer.save()
    job = JobFactory(owner=viewer, status=Job.Status.PENDING)
    client.force_login(viewer)
    assert b"cancel_jobs" not in client.get("/admin/jobs/job/").content
    client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [job.id]})
    assert Job.objects.get(id=job.id).status == Job.Status.PENDING


def test_a_user_with_no_role_may_do_nothing(db):
    nobody = UserFactory()
    assert not Group.objects.filter(user=nobody).exists()
    response = client_for(nobody).get("/api/v1/jobs/")
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "AUTH.PERMISSION_DENIED",
    )
    assert response.json()["error"]["details"] == {"permission": "jobs.view_job"}
