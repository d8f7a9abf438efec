"""Request rates per user, per API key and per anonymous address, counted in the shared cache.

DRF's ``SimpleRateThrottle`` keeps each client's history as a list of timestamps, read and
written back whole on every request: a rate of thousands a minute pickles thousands of floats per
request, and two web processes that read the same history both write it back, so concurrent
requests are undercounted — the very load a throttle is for. These throttles count in a fixed
window with the cache's atomic ``incr`` (Redis INCR) instead: O(1) per request, exact across
every web process. The price is the fixed window's edge: a client may send up to twice its rate
across a window boundary.

Rates are DRF's ``DEFAULT_THROTTLE_RATES`` (settings: JOBPLATFORM_THROTTLE_*_RATE), read when a
throttle is made, so tests may change them; a rate of None turns its throttle off. A refused
request is ``429 API.THROTTLED`` with ``Retry-After``: the seconds left in the window.
"""

from __future__ import annotations

import math
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from jobplatform.models import ApiKey


class _WindowThrottle(SimpleRateThrottle):
    _remaining = 1.0

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self._remaining = self.duration - now % self.duration
        key = f"{ident}:{window}"
        try:
            count = self.cache.incr(key)
        except ValueError:  # the window's first request (or its key expired meanwhile)
            # add() is SET NX: of two processes starting the window, one creates it at 1 and
            # the other increments it.
            count = 1 if self.cache.add(key, 1, self.duration + 1) else self.cache.incr(key)
        return count <= self.num_requests

    def wait(self) -> float:
        return max(1, math.ceil(self._remaining))


class UserRateThrottle(_WindowThrottle):
    """Every authenticated request of a user, whatever the credential."""

    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return f"throttle:user:{request.user.pk}"


class ApiKeyRateThrottle(_WindowThrottle):
    """Every request made with one API key (on top of its user's rate)."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return f"throttle:key:{request.auth.prefix}"


class AnonRateThrottle(_WindowThrottle):
    """Requests with no credentials, per client address (the JWT login, the token refresh).
    The address is REMOTE_ADDR, or X-Forwarded-For behind DJANGO_NUM_PROXIES trusted proxies."""

    scope = "anon"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return f"throttle:anon:{self.get_ident(request)}"
