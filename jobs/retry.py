"""Retry policy (DESIGN §5): a pure function of the attempt number and the error's kind."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int  # retries after the first attempt: max_retries + 1 attempts in all
    backoff: float  # seconds before the first retry
    backoff_max: float  # cap on any single delay
    jitter: bool = True

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


def backoff_delay(*, policy: RetryPolicy, attempt: int) -> float:
    """Delay after failed attempt ``attempt`` (1-based): backoff * 2**(attempt-1), capped."""
    # min() before the power would overflow for a large attempt; the exponent is bounded by the cap.
    exponent = min(attempt - 1, 64)
    factor: int = 2**exponent  # int ** int is typed Any: it is a float when the exponent is < 0
    return min(policy.backoff_max, policy.backoff * factor)


def next_delay(
    *, policy: RetryPolicy, attempt: int, permanent: bool, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait before the next attempt, or None when the job must not be retried.

    Jitter is "equal jitter": a uniformly random point in the upper half of the delay, so retries of
    many jobs that failed together spread out while each still waits at least half its backoff.
    """
    if permanent or attempt >= policy.max_attempts:
        return None
    delay = backoff_delay(policy=policy, attempt=attempt)
    if policy.jitter and delay > 0:
        delay = delay / 2 + (rng or random).uniform(0, delay / 2)
    return delay
