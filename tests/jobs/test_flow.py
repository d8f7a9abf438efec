"""The release's decisions (jobs.flow), from tables: no database, no Celery."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from jobs.flow import (
    MIN_QUEUED,
    NEW,
    RETRY,
    BrokerDepth,
    Candidate,
    ConcurrencyKeyGate,
    Lane,
    PoolSlots,
    QueueState,
    lane_quotas,
    plan_release,
    queue_room,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C = 1, 2, 3


def job(
    owner: int = A,
    *,
    t: int = 0,
    priority: int = 5,
    queue: str = "q",
    attempts: int = 0,
    key: str | None = None,
    max_concurrency: int = 1,
    name: str = "",
) -> Candidate:
    """A due job; ``t``: seconds after T0 that it came due (and was created)."""
    return Candidate(
        id=uuid.uuid5(uuid.NAMESPACE_URL, name or f"{owner}-{t}-{priority}-{queue}-{attempts}"),
        queue=queue,
        owner_id=owner,
        priority=priority,
        due_at=T0 + timedelta(seconds=t),
        created_at=T0 + timedelta(seconds=t),
        attempts=attempts,
        concurrency_key=key,
        max_concurrency=max_concurrency,
    )


@pytest.mark.parametrize(
    ("state", "max_queued", "limit", "room"),
    [
        (QueueState("q"), 0, 500, 500),  # no cap, no broker bound: the batch size
        (QueueState("q", paused=True), 0, 500, 0),
        (QueueState("q", max_in_flight=10, queued=3, running=4), 0, 500, 3),
        (QueueState("q", max_in_flight=10, queued=3, running=9), 0, 500, 0),  # over: none
        (QueueState("q", queued=50, running=500), 100, 500, 50),  # only QUEUED fill the broker
        # The broker is topped up once half its depth was taken, not a few jobs at a time.
        (QueueState("q", queued=51), 100, 500, 0),
        (QueueState("q", queued=0), 1, 500, 1),
        (QueueState("q", max_in_flight=50, queued=60), 100, 500, 0),
        (QueueState("q", max_in_flight=1000, queued=10, running=10), 100, 50, 50),
    ],
)
def test_a_queues_room_is_its_smallest_bound(state, max_queued, limit, room):
    assert queue_room(state, max_queued=max_queued, limit=limit) == room


def test_each_owner_reads_its_weighted_share_of_the_room():
    lanes = [
        Lane("q", A, 5, "pending", T0, weight=3),
        Lane("q", A, 9, "pending", T0, weight=3),
        Lane("q", B, 5, "retrying", T0),
        Lane("other", C, 5, "pending", T0),
        Lane("full", C, 5, "pending", T0),
    ]
    quotas = lane_quotas(lanes, {"q": 10, "other": 7, "full": 0})
    # A: 10 * 3/4 rounded up, for each of its lanes; B: 10 * 1/4 rounded up; a full queue: none.
    assert [quotas.get(lane) for lane in lanes] == [8, 8, 3, 7, None]


def owners(plan) -> list[int]:
    return [j.owner_id for j in plan.release]


def test_within_an_owner_higher_priority_first_then_fifo():
    jobs = [job(t=1), job(t=2, priority=9), job(t=0), job(t=3, priority=9)]
    plan = plan_release(candidates=jobs, rooms={"q": 10})
    assert [(j.priority, j.due_at.second) for j in plan.release] == [(9, 2), (9, 3), (5, 0), (5, 1)]


def test_fifo_holds_among_jobs_due_at_the_same_instant():
    same = [
        Candidate(
            id=uuid.uuid4(),
            queue="q",
            owner_id=A,
            priority=5,
            due_at=T0,
            created_at=T0 + timedelta(microseconds=n),
        )
        for n in range(20)
    ]
    plan = plan_release(candidates=list(reversed(same)), rooms={"q": 20})
    assert plan.release == same


def test_owners_with_due_jobs_take_turns():
    jobs = [job(A, t=t) for t in range(10)] + [job(B, t=100 + t) for t in range(3)]
    plan = plan_release(candidates=jobs, rooms={"q": 8})
    assert owners(plan) == [A, B, A, B, A, B, A, A]


def test_a_client_with_one_job_goes_first_however_many_the_other_has_in_flight():
    """B submitted after A's whole backlog: B's job is due last, but A has jobs in flight."""
    jobs = [job(A, t=t) for t in range(50)] + [job(B, t=1000)]
    plan = plan_release(candidates=jobs, rooms={"q": 1}, in_flight={("q", A, NEW): 100})
    assert owners(plan) == [B]


def test_the_owner_with_fewer_in_flight_is_served_until_it_catches_up():
    jobs = [job(A, t=t) for t in range(10)] + [job(B, t=t) for t in range(10)]
    plan = plan_release(candidates=jobs, rooms={"q": 6}, in_flight={("q", A, NEW): 3})
    assert owners(plan) == [B, B, B, A, B, A]


def test_weights_divide_the_room():
    jobs = [job(o, t=t) for o in (A, B, C) for t in range(20)]
    plan = plan_release(candidates=jobs, rooms={"q": 12}, weights={A: 3, B: 2})
    assert Counter(owners(plan)) == {A: 6, B: 4, C: 2}


def test_in_flight_counts_against_the_weight():
    jobs = [job(o, t=t) for o in (A, B) for t in range(20)]
    # A (weight 2) has 4 in flight, B (weight 1) 2: even shares; A is served twice as fast.
    plan = plan_release(
        candidates=jobs,
        rooms={"q": 6},
        in_flight={("q", A, NEW): 4, ("q", B, NEW): 2},
        weights={A: 2},
    )
    assert Counter(owners(plan)) == {A: 4, B: 2}


def test_new_jobs_and_retries_of_an_owner_alternate():
    """A retry backlog (older) does not starve new jobs, nor new jobs the retries."""
    retries = [job(t=t, attempts=2) for t in range(10)]
    new = [job(t=100 + t) for t in range(10)]
    plan = plan_release(candidates=retries + new, rooms={"q": 6})
    assert [j.kind for j in plan.release] == [RETRY, NEW, RETRY, NEW, RETRY, NEW]


def test_the_kind_with_fewer_in_flight_is_served_first():
    retries = [job(t=t, attempts=1) for t in range(10)]
    new = [job(t=100 + t) for t in range(10)]
    plan = plan_release(candidates=retries + new, rooms={"q": 4}, in_flight={("q", A, RETRY): 3})
    assert [j.kind for j in plan.release] == [NEW, NEW, NEW, RETRY]


def test_priority_decides_between_owners_with_equal_shares():
    plan = plan_release(candidates=[job(A, t=0), job(B, t=5, priority=9)], rooms={"q": 1})
    assert owners(plan) == [B]


def test_queues_are_planned_each_with_its_own_room():
    jobs = [job(A, t=t, queue="a") for t in range(5)] + [job(A, t=t, queue="b") for t in range(5)]
    plan = plan_release(candidates=jobs, rooms={"a": 2, "b": 0})
    assert [j.queue for j in plan.release] == ["a", "a"]


def test_a_concurrency_key_admits_up_to_its_max_and_parks_the_rest_without_taking_room():
    jobs = [job(t=t, key="customer:42", max_concurrency=2) for t in range(5)] + [job(B, t=9)]
    gate = ConcurrencyKeyGate({(A, "customer:42"): 1})
    plan = plan_release(candidates=jobs, rooms={"q": 3}, gates=[gate])
    assert [(j.owner_id, j.concurrency_key) for j in plan.release] == [
        (A, "customer:42"),
        (B, None),
    ]
    assert [j.due_at.second for j in plan.parked["concurrency_key"]] == [1, 2, 3, 4]
    assert gate.in_flight == {(A, "customer:42"): 2}


def test_jobs_of_other_keys_and_without_a_key_pass_a_full_key():
    jobs = [
        job(t=0, key="k1"),
        job(t=1, key="k1"),
        job(t=2, key="k2"),
        job(t=3),
    ]
    plan = plan_release(
        candidates=jobs, rooms={"q": 10}, gates=[ConcurrencyKeyGate({(A, "k1"): 0})]
    )
    assert [(j.concurrency_key, j.due_at.second) for j in plan.release] == [
        ("k1", 0),
        ("k2", 2),
        (None, 3),
    ]
    assert [j.due_at.second for j in plan.parked["concurrency_key"]] == [1]


def test_nothing_is_released_without_room():
    plan = plan_release(candidates=[job(t=t) for t in range(3)], rooms={"q": 0})
    assert plan.release == [] and not plan.parked


def test_the_broker_depth_follows_the_rate_the_queue_is_taken():
    now = [0.0]
    depth = BrokerDepth(seconds=0.25, maximum=1000, window=1.0, clock=lambda: now[0])
    assert depth.depth("q") == MIN_QUEUED  # idle: enough to start
    for _ in range(20):  # 400 jobs a second, in releases of 20 every 50 ms
        now[0] += 0.05
        depth.released("q", 20)
    assert depth.depth("q") == 100  # a quarter second of it
    assert depth.depth("other") == MIN_QUEUED
    now[0] += 1.5  # nothing released since: the queue is idle again
    assert depth.depth("q") == MIN_QUEUED
    for _ in range(20):
        now[0] += 0.05
        depth.released("q", 2000)
    assert depth.depth("q") == 1000  # never past the maximum


@pytest.mark.parametrize(
    ("rate", "depth"),
    [
        (0, MIN_QUEUED),  # idle
        (20, MIN_QUEUED),  # slow jobs: full messages would be seconds of work; a quarter second
        (100, 50),  # full messages would be more than half a second of work: as much as that
        (200, 64),  # short jobs: full messages for four pool processes, not a quarter second
        (400, 100),  # a quarter second is more than that
    ],
)
def test_the_broker_depth_holds_full_messages_of_short_jobs(rate, depth):
    """The depth of a queue whose jobs are short is at least a message of BATCH_MAX jobs for
    each of BATCH_SPREAD pool processes (here 16 x 4), while that is at most twice ``seconds``
    of work: a shallower broker would make small messages, which make workers slower, which
    make the broker shallower still."""
    now = [0.0]
    broker = BrokerDepth(seconds=0.25, maximum=1000, full=64, clock=lambda: now[0])
    broker.released("q", rate)
    assert broker.depth("q") == depth


@pytest.mark.parametrize(
    ("rate", "slots", "depth"),
    [
        (0, 2, MIN_QUEUED),  # prefork -c 2: as without slots (the table above)
        (200, 2, 64),
        (400, 2, 100),
        (0, 32, 32),  # 32 threads, the queue idle: a job for every thread as it wakes
        (20, 32, 32),  # slow jobs: still one per thread, not a quarter second's 5
        (200, 32, 64),  # BATCH_MAX x SPREAD covers two jobs per thread
        (200, 50, 100),  # 50 threads: two jobs each, while that is at most half a second
        (100, 50, 50),  # ... and no more than half a second of work beyond one per thread
        (400, 50, 100),
        (2000, 32, 500),  # a quarter second of fast jobs is deeper than any floor
        (0, 3000, 1000),  # never past the maximum
    ],
)
def test_the_broker_depth_covers_the_pool_slots_of_the_queues_live_workers(rate, slots, depth):
    """With the pool slots of the queue's live workers known (a threads pool of 32), the depth
    holds at least a job per slot, and two per slot while that is at most twice ``seconds`` of
    work, so that the messages (spread over the slots by ``pack``) keep every thread busy."""
    now = [0.0]
    broker = BrokerDepth(seconds=0.25, maximum=1000, full=64, clock=lambda: now[0])
    broker.released("q", rate)
    assert broker.depth("q", slots=slots) == depth


def test_pool_slots_are_read_at_most_every_few_seconds():
    now = [0.0]
    reads = []

    def read() -> dict[str, int]:
        reads.append(now[0])
        return {"io": 32, "default": 2} if now[0] < 10 else {"default": 2}

    slots = PoolSlots(read, every=5.0, clock=lambda: now[0])
    assert slots.of(["io", "default", "idle"]) == {"io": 32, "default": 2, "idle": 0}
    now[0] = 4.9
    assert slots.of(["io"]) == {"io": 32}
    assert reads == [0.0]  # one read serves every release in between
    now[0] = 10.0
    assert slots.of(["io", "default"]) == {"io": 0, "default": 2}  # the io worker fell silent
    assert reads == [0.0, 10.0]


@pytest.mark.parametrize(("seconds", "maximum", "expected"), [(0, 1000, 1000), (0.25, 0, 0)])
def test_a_fixed_or_no_broker_depth(seconds, maximum, expected):
    depth = BrokerDepth(seconds=seconds, maximum=maximum)
    depth.released("q", 5000)
    assert depth.depth("q") == expected


def test_a_key_is_its_owners():
    """Another owner's jobs with the same key string neither count against it nor wait for it."""
    jobs = [job(A, t=0, key="k"), job(B, t=1, key="k")]
    gate = ConcurrencyKeyGate({(A, "k"): 1})
    plan = plan_release(candidates=jobs, rooms={"q": 10}, gates=[gate])
    assert owners(plan) == [B]
    assert [j.owner_id for j in plan.parked["concurrency_key"]] == [A]
