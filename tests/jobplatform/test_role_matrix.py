"""Every endpoint x role (anonymous, viewer, operator, admin) x whose object (own, a teammate's,
another user's), through the REST API.

The rules (docs/security.md "Roles and teams"): anonymous is 401 everywhere; a viewer reads its
own and its teams' work and is 403 on every write; an operator also acts on it; both get 404 for
another user's object (and never see it in a list); an admin reads and acts on everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobplatform.models import Team
from jobplatform.roles import Role
from jobs.models import Job
from tests.conftest import client_for
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory
from tests.factories import UserFactory, with_role
from tests.jobs.factories import JobFactory
from tests.jobs.schedules.conftest import make_schedule

pytestmark = pytest.mark.django_db

STEPS = [{"type": "log", "params": {"message": "hi"}}]
SCHEDULE = {
    "name": "matrix",
    "cron": "*/5 * * * *",
    "job": {"steps": STEPS},
}


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    write: bool  # needs an operator's permission; otherwise a viewer's
    ok: int  # the status of success
    make: Callable[[Any], tuple[Call, Any]]  # owner -> the call, and what to look for in the answer
    # "object": acts on the owner's object (404 if not visible); "list": the object is listed or
    # not (the marker: (key, value)); "bulk": counts what it did (the marker: the count's key);
    # "create": makes the caller's own, so whose does not matter.
    kind: str = "object"

    def __str__(self) -> str:
        return self.name


def _job(owner: Any, **fields: Any) -> Any:
    return JobFactory(owner=owner, **fields)


def _pending_job(owner: Any) -> Any:
    return JobFactory(
        owner=owner, status=Job.Status.PENDING, run_at=timezone.now() + timedelta(hours=1)
    )


def _schedule(owner: Any) -> Any:
    return make_schedule(owner, now=timezone.now())


def _paused_schedule(owner: Any) -> Any:
    from jobs.schedules.services import schedule_pause

    schedule = _schedule(owner)
    schedule_pause(schedule_id=schedule.id, note="")
    return schedule


def _dead(owner: Any) -> Any:
    return DeadLetterFactory(job=FailedJobFactory(owner=owner))


def _list(url: str, key: str, make: Callable[[Any], Any]) -> Callable[[Any], tuple[Call, Any]]:
    return lambda owner: (Call("GET", url), (key, str(getattr(make(owner), key))))


ENDPOINTS = [
    # Jobs
    Endpoint("job list", False, 200, _list("/api/v1/jobs/", "id", _job), "list"),
    Endpoint("job detail", False, 200,
             lambda o: (Call("GET", f"/api/v1/jobs/{_job(o).id}/"), None)),
    Endpoint("job move", True, 200, lambda o: (Call(
        "PATCH", f"/api/v1/jobs/{_pending_job(o).id}/",
        {"run_at": (timezone.now() + timedelta(hours=2)).isoformat()}), None)),
    Endpoint("job cancel", True, 200,
             lambda o: (Call("POST", f"/api/v1/jobs/{_pending_job(o).id}/cancel/"), None)),
    Endpoint("job submit", True, 201,
             lambda o: (Call("POST", "/api/v1/jobs/", {"name": "n", "steps": STEPS}), None),
             "create"),
    Endpoint("job bulk submit", True, 201, lambda o: (Call(
        "POST", "/api/v1/jobs/bulk/", {"jobs": [{"name": "n", "steps": STEPS}]}), None), "create"),
    Endpoint("step types", False, 200, lambda o: (Call("GET", "/api/v1/steps/"), None), "create"),
    # Schedules
    Endpoint("schedule list", False, 200, _list("/api/v1/schedules/", "id", _schedule), "list"),
    Endpoint("schedule create", True, 201,
             lambda o: (Call("POST", "/api/v1/schedules/", SCHEDULE), None), "create"),
    Endpoint("schedule detail", False, 200,
             lambda o: (Call("GET", f"/api/v1/schedules/{_schedule(o).id}/"), None)),
    Endpoint("schedule edit", True, 200, lambda o: (Call(
        "PATCH", f"/api/v1/schedules/{_schedule(o).id}/", {"cron": "*/10 * * * *"}), None)),
    Endpoint("schedule delete", True, 204,
             lambda o: (Call("DELETE", f"/api/v1/schedules/{_schedule(o).id}/"), None)),
    Endpoint("schedule pause", True, 200,
             lambda o: (Call("POST", f"/api/v1/schedules/{_schedule(o).id}/pause/"), None)),
    Endpoint("schedule resume", True, 200, lambda o: (
        Call("POST", f"/api/v1/schedules/{_paused_schedule(o).id}/resume/"), None)),
    Endpoint("schedule trigger", True, 201,
             lambda o: (Call("POST", f"/api/v1/schedules/{_schedule(o).id}/trigger/"), None)),
    # Dead letters
    Endpoint("dead-letter list", False, 200, _list("/api/v1/dead-letters/", "id", _dead), "list"),
    Endpoint("dead-letter groups", False, 200,
             _list("/api/v1/dead-letters/groups/", "fingerprint", _dead), "list"),
    Endpoint("dead-letter detail", False, 200,
             lambda o: (Call("GET", f"/api/v1/dead-letters/{_dead(o).id}/"), None)),
    Endpoint("dead-letter retry", True, 200,
             lambda o: (Call("POST", f"/api/v1/dead-letters/{_dead(o).id}/retry/", {}), None)),
    Endpoint("dead-letter dismiss", True, 200,
             lambda o: (Call("POST", f"/api/v1/dead-letters/{_dead(o).id}/dismiss/", {}), None)),
    Endpoint("dead-letter bulk retry", True, 200, lambda o: (Call(
        "POST", "/api/v1/dead-letters/retry/", {"ids": [_dead(o).id]}), "retried"), "bulk"),
    Endpoint("dead-letter bulk dismiss", True, 200, lambda o: (Call(
        "POST", "/api/v1/dead-letters/dismiss/", {"ids": [_dead(o).id]}), "dismissed"), "bulk"),
]  # fmt: skip

ROLES = ["viewer", "operator", "admin"]
WHOSE = ["own", "team", "other"]
CASES = [pytest.param(e, "anonymous", "other", id=f"{e}-anonymous") for e in ENDPOINTS] + [
    pytest.param(e, role, whose, id=f"{e}-{role}-{whose}")
    for e in ENDPOINTS
    for role in ROLES
    for whose in WHOSE
]


@dataclass
class World:
    actor: Any  # None: anonymous
    owner: Any  # of the object under test
    client: APIClient


def world(role: str, whose: str) -> World:
    teammate = with_role(UserFactory(), Role.OPERATOR)
    stranger = with_role(UserFactory(), Role.OPERATOR)
    if role == "anonymous":
        return World(actor=None, owner=stranger, client=APIClient())
    actor = with_role(UserFactory(), Role(role))
    Team.objects.create(name=f"team-{actor.pk}").members.set([actor, teammate])
    owner = {"own": actor, "team": teammate, "other": stranger}[whose]
    return World(actor=actor, owner=owner, client=client_for(actor))


def send(client: APIClient, call: Call) -> Any:
    return getattr(client, call.method.lower())(call.url, call.body, format="json")


@pytest.mark.parametrize(("endpoint", "role", "whose"), CASES)
def test_role_matrix(endpoint: Endpoint, role: str, whose: str) -> None:
    w = world(role, whose)
    call, marker = endpoint.make(w.owner)
    response = send(w.client, call)
    code = response.json()["error"]["code"] if response.status_code >= 400 else None

    if role == "anonymous":
        assert (response.status_code, code) == (401, "AUTH.NOT_AUTHENTICATED")
        return
    if endpoint.write and role == "viewer":
        assert (response.status_code, code) == (403, "AUTH.PERMISSION_DENIED")
        return
    sees = role == "admin" or whose in ("own", "team") or endpoint.kind == "create"
    if endpoint.kind == "list":  # the object is in it or not, never an error
        assert response.status_code == endpoint.ok, response.content
        key, value = marker
        assert (value in {str(item[key]) for item in response.json()["results"]}) is sees
    elif endpoint.kind == "bulk":  # invisible entries are not selected
        assert response.status_code == endpoint.ok, response.content
        assert response.json()[marker] == (1 if sees else 0)
    elif sees:
        assert response.status_code == endpoint.ok, response.content
    else:
        assert response.status_code == 404, response.content
        assert code is not None and code.endswith(".NOT_FOUND")


@pytest.mark.parametrize("role", ROLES)
def test_stats_count_what_the_caller_sees(role: str) -> None:
    w = world(role, "own")
    teammate = Team.objects.get().members.exclude(pk=w.actor.pk).get()
    for owner in (w.actor, teammate, with_role(UserFactory(), Role.OPERATOR)):
        _dead(owner)
    response = send(w.client, Call("GET", "/api/v1/dead-letters/stats/"))
    assert response.status_code == 200
    assert response.json()["open"] == (3 if role == "admin" else 2)


# Platform-wide endpoints (flow control): not an owner's object, so whose does not matter; each
# needs a least role. Every role reads the queues and its own limits; an operator pauses and
# resumes a queue (an incident, a deploy); only an admin changes its in-flight cap.
PLATFORM = [
    ("queue list", Call("GET", "/api/v1/queues/"), Role.VIEWER, 200),
    ("queue detail", Call("GET", "/api/v1/queues/default/"), Role.VIEWER, 200),
    ("limits", Call("GET", "/api/v1/limits/"), Role.VIEWER, 200),
    ("queue pause", Call("POST", "/api/v1/queues/default/pause/"), Role.OPERATOR, 200),
    ("queue resume", Call("POST", "/api/v1/queues/default/resume/"), Role.OPERATOR, 200),
    ("queue cap", Call("PATCH", "/api/v1/queues/default/", {"max_in_flight": 5}), Role.ADMIN, 200),
]
RANK = {None: 0, Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@pytest.mark.parametrize(("name", "call", "least", "ok"), PLATFORM, ids=[p[0] for p in PLATFORM])
@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r or "anonymous")
def test_platform_role_matrix(name: str, call: Call, least: Role, ok: int, role: Role | None):
    client = APIClient() if role is None else client_for(with_role(UserFactory(), role))
    response = send(client, call)
    if role is None:
        expected: tuple[int, str | None] = (401, "AUTH.NOT_AUTHENTICATED")
    elif RANK[role] < RANK[least]:
        expected = (403, "AUTH.PERMISSION_DENIED")
    else:
        expected = (ok, None)
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    assert (response.status_code, code) == expected, response.content
