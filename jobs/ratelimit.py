"""Rate limits: one token bucket per named limit, in Redis, shared by every dispatcher.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second. The release asks, in one
round trip for every limit its candidates count against, for as many tokens as it has
candidates (:func:`take`); Redis grants what the buckets hold, and the release hands back what
its plan did not use (:func:`take` with negative counts). The script runs atomically in Redis on
Redis's own clock (``TIME``), so every dispatcher, and anything else that takes tokens, draws
from one bucket, whatever its own clock says.

Why not a library: ``limits`` (the one Flask-Limiter and slowapi use) counts fixed, moving or
sliding windows, with no burst beside the rate, and grants one hit at a time, all or nothing;
``pyrate-limiter`` keeps a sorted-set log of every hit. The release needs "how many of these n
may go now", over several buckets, in one round trip: that is this script, 20 lines of Lua.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from jobplatform.redis import shared_redis

KEY_PREFIX = "jobplatform:ratelimit:"

# KEYS: one bucket per limit. ARGV, three per key: rate (tokens a second), burst, and how many
# tokens to take (negative: hand back). Returns, per key, the tokens taken (or handed back) and
# the whole tokens left.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local result = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local n = want
  if want > 0 then n = math.min(want, math.floor(tokens)) end
  tokens = math.min(burst, tokens - n)
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  -- A bucket untouched long enough to be full again is forgotten: full is its default.
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  result[2 * i - 1] = n
  result[2 * i] = math.floor(tokens)
end
return result
"""


@dataclass(frozen=True)
class Want:
    name: str
    rate: float
    burst: int
    count: int  # tokens to take; negative: to hand back; 0: only refill


@cache
def _script(client: Any) -> Any:
    # register_script runs EVALSHA and loads the script on NOSCRIPT (a restarted Redis).
    return client.register_script(_TAKE)


def _run(wants: Sequence[Want]) -> dict[str, tuple[int, int]]:
    if not wants:
        return {}
    args: list[Any] = []
    for want in wants:
        args += [repr(float(want.rate)), want.burst, want.count]
    result = _script(shared_redis())(keys=[KEY_PREFIX + want.name for want in wants], args=args)
    return {want.name: (int(result[2 * i]), int(result[2 * i + 1])) for i, want in enumerate(wants)}


def take(wants: Sequence[Want]) -> dict[str, int]:
    """Take tokens from each bucket, as many as it holds up to ``count``; return per name the
    number taken (handed back, for negative counts). Raises redis.RedisError."""
    return {name: taken for name, (taken, _) in _run(wants).items()}


def tokens(wants: Sequence[Want]) -> dict[str, int]:
    """The whole tokens each bucket holds after taking ``count``. Raises redis.RedisError."""
    return {name: left for name, (_, left) in _run(wants).items()}


def forget(name: str) -> None:
    """Drop a limit's bucket (the limit was deleted or changed): it starts full."""
    shared_redis().delete(KEY_PREFIX + name)
