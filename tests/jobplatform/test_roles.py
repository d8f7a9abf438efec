"""The roles' groups: the live table, the migration's frozen copy and the database agree."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group

from jobplatform.api.authentication import user_with_permissions
from jobplatform.models import Team
from jobplatform.roles import PERMISSIONS, Role
from tests.factories import UserFactory, with_role

pytestmark = pytest.mark.django_db

migration = importlib.import_module("jobplatform.migrations.0002_roles")
# Later migrations that grant the roles more, in order: each keeps a frozen copy of what it adds.
later = [
    importlib.import_module("jobs.migrations.0008_flow_control"),
    importlib.import_module("jobs.migrations.0009_rate_limits_breakers"),
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
