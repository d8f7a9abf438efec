"""One Redis client per process for the platform's own keys (throttling, rate limits)."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.core.signals import setting_changed


@cache
def shared_redis() -> redis.Redis:
    """The Redis of the default cache (its first server, where Django's RedisCache writes)."""
    location = settings.CACHES["default"]["LOCATION"]
    if isinstance(location, str):
        location = location.split(",")
    return redis.Redis.from_url(location[0])


def _forget_client(setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":  # tests
        shared_redis.cache_clear()


setting_changed.connect(_forget_client)
