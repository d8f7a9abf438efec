"""The token bucket script (jobs.ratelimit) against the tests' real Redis."""

from __future__ import annotations

import threading
import uuid

import pytest

from jobs import ratelimit
from jobs.ratelimit import Want


@pytest.fixture
def name():
    limit = f"test-{uuid.uuid4().hex}"
    yield limit
    ratelimit.forget(limit)


SLOW = 0.001  # tokens a second: nothing refills within a test


def test_a_full_bucket_grants_its_burst_then_nothing(name):
    assert ratelimit.take([Want(name, SLOW, 5, 8)]) == {name: 5}
    assert ratelimit.take([Want(name, SLOW, 5, 1)]) == {name: 0}


def test_tokens_handed_back_are_granted_again_never_past_the_burst(name):
    ratelimit.take([Want(name, SLOW, 5, 5)])
    assert ratelimit.take([Want(name, SLOW, 5, -2)]) == {name: -2}
    assert ratelimit.tokens([Want(name, SLOW, 5, 0)]) == {name: 2}
    ratelimit.take([Want(name, SLOW, 5, -50)])
    assert ratelimit.tokens([Want(name, SLOW, 5, 0)]) == {name: 5}


def test_one_call_serves_several_buckets(name):
    other = name + "-b"
    try:
        taken = ratelimit.take([Want(name, SLOW, 3, 10), Want(other, SLOW, 7, 4)])
        assert taken == {name: 3, other: 4}
        assert ratelimit.tokens([Want(other, SLOW, 7, 0)]) == {other: 3}
    finally:
        ratelimit.forget(other)


def test_a_bucket_refills_at_its_rate(name):
    """At 1,000,000 tokens a second the bucket is full again by the next call."""
    ratelimit.take([Want(name, 1_000_000, 10, 10)])
    assert ratelimit.take([Want(name, 1_000_000, 10, 10)]) == {name: 10}


def test_takers_racing_on_one_bucket_share_its_tokens_exactly(name):
    granted: list[int] = []
    lock = threading.Lock()

    def taker() -> None:
        for _ in range(20):
            n = ratelimit.take([Want(name, SLOW, 50, 1)])[name]
            with lock:
                granted.append(n)

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50 and len(granted) == 160
