"""Request types for annotations: the request of a view that only signed-in users reach.

The API's default permission is IsAuthenticated and the admin site lets only staff in, so there
``request.user`` is a ``User``, never ``AnonymousUser``. Neither DRF nor Django builds these
classes: they exist for mypy, as django-stubs recommends, so that a view hands ``request.user`` to
a service typed ``owner: User`` without a cast.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.request import Request


class AuthenticatedRequest(Request):
    """A DRF request behind IsAuthenticated. A view with AllowAny takes a plain ``Request``."""

    user: User


class AuthenticatedHttpRequest(HttpRequest):
    """A request to the Django admin (staff only)."""

    user: User


def admin_actor(request: HttpRequest) -> User:
    """The admin's user: only staff reach the admin, so never AnonymousUser."""
    assert isinstance(request.user, User)
    return request.user
