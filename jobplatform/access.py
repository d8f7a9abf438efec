"""Whose work a user may see: their own, their teams' members', or, with
``jobplatform.access_all_owners`` (the admin role), everyone's.

The selectors of jobs, schedules and dead letters filter with ``owned_by_visible``; an object
outside it is a 404, so others' ids are not disclosed. What the user may *do* to what they see is
a permission of their role, checked by ``jobplatform.api.permissions.HasRolePermission``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from jobplatform.models import Team
from jobplatform.roles import ACCESS_ALL_OWNERS

M = TypeVar("M", bound=Model)


def sees_all_owners(user: Any) -> bool:
    return bool(user.has_perm(ACCESS_ALL_OWNERS))


def visible_owner_ids(user: Any) -> list[int]:
    """The user and every member of the user's teams (one query, kept on the user object for
    the rest of the request)."""
    cached: list[int] | None = getattr(user, "_visible_owner_ids", None)
    if cached is None:
        membership = Team.members.through.objects
        teams = membership.filter(user_id=user.pk).values("team_id")
        mates = membership.filter(team_id__in=teams).exclude(user_id=user.pk)
        cached = [user.pk, *sorted(set(mates.values_list("user_id", flat=True)))]
        user._visible_owner_ids = cached
    return cached


def prime_visible_owners(user: Any, teammates: list[int]) -> None:
    """What ``visible_owner_ids`` would find, read already (by the API's authentication)."""
    user._visible_owner_ids = [user.pk, *sorted(set(teammates))]


def owned_by_visible(queryset: QuerySet[M], user: Any, owner_field: str) -> QuerySet[M]:
    """``queryset`` narrowed to the rows whose ``owner_field`` is an owner ``user`` may see."""
    if sees_all_owners(user):
        return queryset
    owners = visible_owner_ids(user)
    if len(owners) == 1:  # no team: the plain equality the (owner, -created_at) indexes serve
        return queryset.filter(**{f"{owner_field}_id": owners[0]})
    return queryset.filter(**{f"{owner_field}_id__in": owners})
