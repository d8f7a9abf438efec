"""The roles' groups: the live table, the migration's frozen copy and the database agree."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from jobplatform.api.authentication import user_with_permissions
from jobplatform.models import Team
from jobplatform.roles import PERMISSIONS, Role
from jobs.services.dependencies import rate_limit_set
from tests.conftest import client_for
from tests.factories import UserFactory, with_role

pytestmark = pytest.mark.django_db

migration = importlib.import_module("jobplatform.migrations.0002_roles")
# Later migrations that grant the roles more, in order: each keeps a frozen copy of what it adds.
later = [
    importlib.import_module("jobs.migrations.0008_flow_control"),
    importlib.import_module("jobs.migrations.0010_rate_limits_breakers"),
]


def test_the_migrations_froze_the_live_role_table():
    frozen = {Role(name): set(keys) for name, keys in migration.ROLES.items()}
    known = set(migration.PERMISSIONS)
    for grant in later:
        for name, keys in grant.ROLES.items():
            frozen[Role(name)] |= keys
        known |= set(grant.PERMISSIONS)
    assert {role: frozenset(keys) for role, keys in frozen.items()} == PERMISSIONS
    assert known == PERMISSIONS[Role.ADMIN]


def test_the_migrations_make_each_role_a_group_with_exactly_its_permissions():
    Group.objects.filter(name__in=list(Role)).delete()  # as a flushed database has them
    migration.create_roles(apps, None)
    for grant in later:
        grant.grant(apps, None)
    for role, expected in PERMISSIONS.items():
        group = Group.objects.get(name=role.value)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert held == expected, role


def test_each_role_holds_the_one_below_it():
    assert PERMISSIONS[Role.VIEWER] < PERMISSIONS[Role.OPERATOR] < PERMISSIONS[Role.ADMIN]


@pytest.mark.parametrize("role", list(Role))
def test_the_authentication_loads_the_permissions_django_would_and_teammates(
    role, django_assert_num_queries
):
    user = with_role(UserFactory(), role)
    mate = UserFactory()
    Team.objects.create(name="t").members.set([user, mate])
    loaded = user_with_permissions(user_id=user.pk)
    with django_assert_num_queries(0):
        assert loaded.has_perm("jobs.add_job") == (role is not Role.VIEWER)
        assert loaded._visible_owner_ids == [user.pk, mate.pk]
    fresh = type(user).objects.get(pk=user.pk)
    assert loaded.get_all_permissions() == ModelBackend().get_all_permissions(fresh)


# Rate limits and circuit breakers: platform-wide, not an owner's. Every role reads them; an
# operator opens and closes a breaker by hand (an incident); only an admin sets a rate limit.
RANK = {None: 0, Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}
DEPENDENCY_CALLS = [
    ("rate limits", "GET", "/api/v1/rate-limits/", None, Role.VIEWER, 200),
    ("rate limit", "GET", "/api/v1/rate-limits/roles-api/", None, Role.VIEWER, 200),
    ("rate limit set", "PUT", "/api/v1/rate-limits/roles-api/", {"rate": 2}, Role.ADMIN, 200),
    ("rate limit delete", "DELETE", "/api/v1/rate-limits/roles-api/", None, Role.ADMIN, 204),
    ("breakers", "GET", "/api/v1/breakers/", None, Role.VIEWER, 200),
    ("breaker", "GET", "/api/v1/breakers/roles.example/", None, Role.VIEWER, 200),
    ("breaker open", "POST", "/api/v1/breakers/roles.example/open/", None, Role.OPERATOR, 200),
    ("breaker close", "POST", "/api/v1/breakers/roles.example/close/", None, Role.OPERATOR, 200),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "least", "ok"),
    [c[1:] for c in DEPENDENCY_CALLS],
    ids=[c[0] for c in DEPENDENCY_CALLS],
)
@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r or "anonymous")
def test_rate_limit_and_breaker_role_matrix(method, url, body, least, ok, role):
    rate_limit_set(name="roles-api", rate=1, actor=None)
    client = APIClient() if role is None else client_for(with_role(UserFactory(), role))
    response = getattr(client, method.lower())(url, body, format="json")
    if role is None:
        expected: tuple[int, str | None] = (401, "AUTH.NOT_AUTHENTICATED")
    elif RANK[role] < RANK[least]:
        expected = (403, "AUTH.PERMISSION_DENIED")
    else:
        expected = (ok, None)
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    assert (response.status_code, code) == expected, response.content
