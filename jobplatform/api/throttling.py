"""Request rates per user, per API key and per anonymous address, counted in the shared cache.

DRF's ``SimpleRateThrottle`` keeps each client's history as a list of timestamps, read and
written back whole on every request: a rate of thousands a minute pickles thousands of floats per
request, and two web processes that read the same history both write it back, so concurrent
requests are undercounted — the very load a throttle is for. This throttle counts in a fixed
window with an atomic Redis INCR instead: O(1) per request, exact across every web process. The
price is the fixed window's edge: a client may send up to twice its rate across a window
boundary.

Each count is a key of Django's cache (its Redis, its key format: ``cache.get`` reads it), but the
counts of a request (its user's and its key's) are written through one Redis client per process
in one round trip (SET NX EX, then INCR, per count, in a pipeline). Django's ``cache.incr`` costs
two round trips per count (EXISTS, then INCR) and builds a new ``redis.Redis`` per call, which
copies redis-py's response callbacks: that was most of the throttling's cost
(docs/performance.md).

Rates are DRF's ``DEFAULT_THROTTLE_RATES`` (settings: JOBPLATFORM_THROTTLE_*_RATE), read per
request, so tests may change them; a rate of None turns that count off. A refused
request is ``429 API.THROTTLED`` with ``Retry-After``: the seconds left in the window.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.cache import cache as default_cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from jobplatform.models import ApiKey
from jobplatform.redis import shared_redis


class RateThrottle(BaseThrottle):
    """Counts a request against every rate that applies to it, in one Redis round trip: its
    user's (``user``) and, with an API key, the key's (``api_key``); without credentials, its
    client address's (``anon``: the JWT login and refresh). Refused if any count is over."""

    cache = default_cache
    _wait = 1.0

    def allow_request(self, request: Request, view: Any) -> bool:
        rates = api_settings.DEFAULT_THROTTLE_RATES
        counters: list[tuple[str, Any]] = []
        if request.user and request.user.is_authenticated:
            counters.append((f"user:{request.user.pk}", rates.get("user")))
            if isinstance(request.auth, ApiKey):
                counters.append((f"key:{request.auth.prefix}", rates.get("api_key")))
        else:
            counters.append((f"anon:{self.get_ident(request)}", rates.get("anon")))
        limits = [(ident, *_parse(rate)) for ident, rate in counters if rate]
        if not limits:
            return True
        now = time.time()
        pipeline = shared_redis().pipeline(transaction=False)
        for ident, _, duration in limits:
            key = self.cache.make_and_validate_key(f"throttle:{ident}:{int(now // duration)}")
            # SET NX starts the window's count at 0 with its expiry, unless a request (of any
            # process) already did; INCR then counts this request, atomically.
            pipeline.set(key, 0, ex=duration + 1, nx=True)
            pipeline.incr(key)
        counts = pipeline.execute()[1::2]
        over = [
            duration - now % duration
            for (_, allowed, duration), count in zip(limits, counts, strict=True)
            if count > allowed
        ]
        self._wait = max(over, default=1.0)
        return not over

    def wait(self) -> float:
        return max(1, math.ceil(self._wait))


def _parse(rate: str) -> tuple[int, int]:
    """A rate such as 3000/min -> (3000, 60): DRF's format (SimpleRateThrottle.parse_rate)."""
    allowed, period = rate.split("/")
    return int(allowed), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
