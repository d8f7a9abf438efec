from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reuse) a user and print its API token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="operator: sees every job, admin")
        parser.add_argument("--password", help="set this password (for the Django admin)")

    def handle(
        self, *args: Any, username: str, staff: bool, password: str | None, **options: Any
    ) -> None:
        user, created = get_user_model().objects.get_or_create(username=username)
        if staff and not user.is_staff:
            user.is_staff = True
            user.is_superuser = True
        if password:
            user.set_password(password)
        if created and not password:
            user.set_unusable_password()
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        verb = "created" if created else "reused"
        self.stdout.write(f"{verb} user {username}; API token: {token.key}")
