"""Writes on who may do what: API keys, roles, teams, and the audit trail they leave."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobplatform.errors import InvalidInput, NotFound
from jobplatform.models import ApiKey, AuditEvent, Team
from jobplatform.roles import Role

Action = AuditEvent.Action


def audit_record(
    *,
    action: str,
    actor: User | None,
    subject: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one row of the audit trail (in the caller's transaction, if any)."""
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        subject=subject[:200],
        details=details or {},
    )


# --- API keys ----------------------------------------------------------------------------------


KEY_NAME_MAX = 50  # AbstractAPIKey.name's max_length


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    key: str  # the whole key: shown once, never stored


def api_key_create(
    *,
    user: User,
    name: str,
    actor: User | None,
    scopes: Iterable[str] = (ApiKey.Scope.READ, ApiKey.Scope.WRITE),
    expires_at: datetime | None = None,
) -> NewApiKey:
    """A new key for ``user``; the key is in the answer only. Audited as ``api_key.created``."""
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if not scopes or unknown:
        raise InvalidInput(
            "KEYS.INVALID_SCOPES",
            f"scopes are one or more of {ApiKey.Scope.values}",
            {"unknown": sorted(unknown)},
        )
    if not 1 <= len(name) <= KEY_NAME_MAX:
        raise InvalidInput("KEYS.INVALID_NAME", "a key's name has 1-50 characters")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("KEYS.EXPIRY_IN_PAST", "expires_at must be in the future")
    with transaction.atomic():
        api_key, key = ApiKey.objects.create_key(
            user=user, name=name, scopes=scopes, expiry_date=expires_at, created_by=actor
        )
        assert isinstance(api_key, ApiKey)  # the library's manager is typed for its base model
        audit_record(
            action=Action.API_KEY_CREATED,
            actor=actor,
            subject=f"key {api_key.prefix} of {user.get_username()}",
            details={"prefix": api_key.prefix, "name": name, "scopes": scopes,
                     "expires_at": expires_at.isoformat() if expires_at else None},
        )  # fmt: skip
    return NewApiKey(api_key=api_key, key=key)


def api_key_revoke(*, prefix: str, actor: User | None) -> bool:
    """Revoke the key: refused from the next request on. One conditional UPDATE; False (and no
    audit row) if it was revoked already. NotFound if there is no such key."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(prefix=prefix, revoked=False).update(
            revoked=True, revoked_at=timezone.now()
        )
        if not revoked:
            if not ApiKey.objects.filter(prefix=prefix).exists():
                raise NotFound("KEYS.NOT_FOUND", f"no API key {prefix}")
            return False
        owner = ApiKey.objects.select_related("user").get(prefix=prefix).user
        audit_record(
            action=Action.API_KEY_REVOKED,
            actor=actor,
            subject=f"key {prefix} of {owner.get_username()}",
            details={"prefix": prefix},
        )
    return True


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Record that the key was used, at most once per JOBPLATFORM_API_KEY_LAST_USED_PRECISION
    seconds: a key used a thousand times a second costs one UPDATE a minute, not a thousand.

    The UPDATE is conditional, so web processes that all saw a stale ``last_used_at`` write it
    once between them (the others match no row)."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.JOBPLATFORM_API_KEY_LAST_USED_PRECISION)
    if api_key.last_used_at is not None and api_key.last_used_at > stale_before:
        return
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before), pk=api_key.pk
    ).update(last_used_at=now)
    api_key.last_used_at = now


# --- roles and teams ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What a user's roles and privileges are, as recorded before and after a change."""

    groups: tuple[str, ...]
    permissions: tuple[str, ...]
    is_staff: bool
    is_superuser: bool
    is_active: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "permissions": list(self.permissions),
            "is_staff": self.is_staff,
            "is_superuser": self.is_superuser,
            "is_active": self.is_active,
        }


def user_access(*, user: Any) -> Access:
    """The user's groups, own permissions and flags, read from the database."""
    return Access(
        groups=tuple(sorted(user.groups.values_list("name", flat=True))),
        permissions=tuple(
            sorted(
                f"{app}.{codename}"
                for app, codename in user.user_permissions.values_list(
                    "content_type__app_label", "codename"
                )
            )
        ),
        is_staff=user.is_staff,
        is_superuser=user.is_superuser,
        is_active=user.is_active,
    )


def user_access_changed(*, user: User, before: Access, actor: User | None) -> bool:
    """Audit a change of the user's roles, permissions or flags, if ``before`` differs from
    now (the admin's user page calls this after saving; ``user_set_role`` too)."""
    after = user_access(user=user)
    if after == before:
        return False
    old, new = before.as_dict(), after.as_dict()
    audit_record(
        action=Action.ACCESS_CHANGED,
        actor=actor,
        subject=f"user {user.get_username()}",
        details={
            "before": {k: v for k, v in old.items() if v != new[k]},
            "after": {k: v for k, v in new.items() if v != old[k]},
        },
    )
    return True


def user_set_role(
    *,
    user: Any,
    role: Role | None,
    actor: User | None,
    staff: bool | None = None,
) -> bool:
    """Make ``role`` the user's only role (groups that are not roles stay), and no longer a
    superuser unless the role is admin. ``staff``: may (or may not) log in to the Django admin,
    whose pages then show what the role's permissions allow. None leaves either as it is.
    Audited if anything changed."""
    with transaction.atomic():
        before = user_access(user=user)
        if role is not None:
            roles = Group.objects.filter(name__in=[r.value for r in Role])
            user.groups.remove(*roles.exclude(name=role.value))
            user.groups.add(roles.get(name=role.value))
            if role is not Role.ADMIN:
                user.is_superuser = False
        if staff is not None:
            user.is_staff = staff
        user.save(update_fields=["is_superuser", "is_staff"])
        return user_access_changed(user=user, before=before, actor=actor)


def team_members_changed(*, team: Team, before: set[int], actor: User | None) -> bool:
    """Audit a change of the team's members (user ids ``before``), if there was one (the admin's
    team page calls this after saving; ``team_set_members`` too)."""
    after = set(team.members.values_list("id", flat=True))
    added, removed = after - before, before - after
    if not added and not removed:
        return False
    users = get_user_model().objects.filter(id__in=added | removed)
    names = dict(users.values_list("id", "username"))
    audit_record(
        action=Action.TEAM_CHANGED,
        actor=actor,
        subject=f"team {team.name}",
        details={
            "added": sorted(names.get(i, str(i)) for i in added),
            "removed": sorted(names.get(i, str(i)) for i in removed),
        },
    )
    return True


def team_set_members(*, team: Team, members: Iterable[User], actor: User | None) -> bool:
    """Make ``members`` the team's members. Audited if anything changed."""
    with transaction.atomic():
        before = set(team.members.values_list("id", flat=True))
        team.members.set(list(members))
        return team_members_changed(team=team, before=before, actor=actor)
