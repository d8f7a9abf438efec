from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from jobplatform.roles import PERMISSIONS, Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.Faker("email")


def role_group(role: Role) -> Group:
    """The role's group. The migration 0002_roles made it, but a transactional test's flush
    empties the table (the permissions come back by post_migrate, the groups do not)."""
    group, created = Group.objects.get_or_create(name=role.value)
    if created:
        wanted = Q()
        for key in PERMISSIONS[role]:
            app_label, codename = key.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.set(Permission.objects.filter(wanted))
    return group


def with_role(user: Any, role: Role) -> Any:
    user.groups.add(role_group(role))
    return user
