"""Reads on API keys: a user sees their own keys; with ``jobplatform.view_apikey`` (the admin
role) everyone's."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobplatform.errors import NotFound
from jobplatform.models import ApiKey


def api_key_list(*, user: Any) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("user")
    return keys if user.has_perm("jobplatform.view_apikey") else keys.filter(user=user)


def api_key_get_visible(*, prefix: str, user: Any) -> ApiKey:
    """The key, if ``user`` may see it; otherwise NotFound, so others' prefixes are not
    disclosed."""
    try:
        return api_key_list(user=user).get(prefix=prefix)
    except ApiKey.DoesNotExist:
        raise NotFound("KEYS.NOT_FOUND", f"no API key {prefix}") from None
