from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from jobplatform.roles import Role
from jobplatform.services import user_set_role


class Command(BaseCommand):
    help = "Create (or reuse) a user, give it a role, and print its API token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            choices=[role.value for role in Role],
            help="make this the user's role (default for a new user: operator; an existing "
            "user keeps theirs unless given)",
        )
        parser.add_argument(
            "--staff",
            action="store_true",
            help="may log in to the Django admin, which shows what the role allows (no longer "
            "a superuser)",
        )
        parser.add_argument("--password", help="set this password (for the admin and JWT login)")

    def handle(
        self,
        *args: Any,
        username: str,
        role: str | None,
        staff: bool,
        password: str | None,
        **options: Any,
    ) -> None:
        user, created = get_user_model().objects.get_or_create(username=username)
        if password:
            user.set_password(password)
        if created and not password:
            user.set_unusable_password()
        user.save()
        if role is None and created:
            role = Role.OPERATOR
        user_set_role(
            user=user, role=Role(role) if role else None, actor=None, staff=True if staff else None
        )
        token, _ = Token.objects.get_or_create(user=user)
        verb = "created" if created else "reused"
        roles = user.groups.filter(name__in=[r.value for r in Role]).values_list("name", flat=True)
        self.stdout.write(
            f"{verb} user {username} (role {','.join(sorted(roles)) or 'none'});"
            f" API token: {token.key}"
        )
