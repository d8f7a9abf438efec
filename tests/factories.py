from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from jobplatform.roles import Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.Faker("email")


def role_group(role: Role) -> Group:
    """The role's group, made by the migration 0002_roles (and after a transactional test's
    flush by tests.conftest._restore_roles)."""
    return Group.objects.get(name=role.value)


def with_role(user: Any, role: Role) -> Any:
    user.groups.add(role_group(role))
    return user
