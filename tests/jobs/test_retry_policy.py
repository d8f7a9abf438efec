from __future__ import annotations

import random

import pytest

from jobs.retry import RetryPolicy, backoff_delay, next_delay

POLICY = RetryPolicy(max_retries=5, backoff=2, backoff_max=10, jitter=False)


@pytest.mark.parametrize(
    ("attempt", "permanent", "expected"),
    [
        (1, False, 2),  # backoff * 2**0
        (2, False, 4),
        (3, False, 8),
        (4, False, 10),  # capped at backoff_max
        (5, False, 10),
        (6, False, None),  # 6 attempts = 1 + max_retries: exhausted
        (7, False, None),
        (1, True, None),  # permanent errors are never retried
    ],
)
def test_next_delay_follows_the_capped_exponential_formula(attempt, permanent, expected):
    assert next_delay(policy=POLICY, attempt=attempt, permanent=permanent) == expected


def test_zero_retries_means_one_attempt():
    policy = RetryPolicy(max_retries=0, backoff=1, backoff_max=1)
    assert next_delay(policy=policy, attempt=1, permanent=False) is None


def test_jitter_stays_within_the_upper_half_of_the_delay():
    policy = RetryPolicy(max_retries=50, backoff=2, backoff_max=300, jitter=True)
    rng = random.Random(7)
    for attempt in range(1, 50):
        base = backoff_delay(policy=policy, attempt=attempt)
        delays = {
            next_delay(policy=policy, attempt=attempt, permanent=False, rng=rng) for _ in range(20)
        }
        assert all(base / 2 <= d <= base for d in delays)
        assert len(delays) > 1  # actually jittered


def test_a_huge_attempt_number_does_not_overflow():
    policy = RetryPolicy(max_retries=10_000, backoff=1, backoff_max=300, jitter=False)
    assert next_delay(policy=policy, attempt=5000, permanent=False) == 300
