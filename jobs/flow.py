"""Flow control's decisions, as pure functions: how much room a queue has, and which waiting jobs
a release takes, in which order (docs/architecture.md#flow-control).

``jobs.services.release`` reads the table (queue states, jobs in flight, the heads of the
waiting lanes), calls these, and writes what they decide; nothing here touches the database,
so ``tests/jobs/test_flow.py`` walks the combinations from tables, as the retry policy's tests
do. The release applies, in this order (DESIGN §3): a paused queue, the gates a job must pass
(the circuit breakers of its hosts, its concurrency key, its rate limits), the
queue's in-flight cap and broker depth, fair share between owners (weighted by in-flight
count), new jobs against retries, priority, FIFO. ``BrokerDepth`` is the dispatcher's own
measure of how many jobs of a queue to keep in the broker.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

logger = logging.getLogger("jobplatform.dispatcher")

NEW = "new"  # a job that never ran (attempts = 0)
RETRY = "retry"  # a job that ran before: a retry, or a manual retry of a failed job
KINDS = (NEW, RETRY)


def kind_of(attempts: int) -> str:
    return RETRY if attempts > 0 else NEW


@dataclass(frozen=True)
class QueueState:
    """A queue as the release sees it: its operator settings and its jobs in flight."""

    name: str
    paused: bool = False
    max_in_flight: int | None = None  # None: no cap
    queued: int = 0  # QUEUED: released, their message waits in the broker
    running: int = 0  # RUNNING: claimed by a worker


def queue_room(state: QueueState, *, max_queued: int, limit: int) -> int:
    """How many jobs a release may add to the queue: none while paused; never past its in-flight
    cap (QUEUED + RUNNING), nor past ``max_queued`` jobs waiting in the broker (0: no such
    bound), nor more than ``limit`` at once.

    The broker is topped up only once workers have taken half of ``max_queued``: a release
    that refilled the few jobs taken since the last one (a held poll, 50 ms) would publish them
    in messages of a job or two, and pay a release for each few jobs; half the depth at once
    goes out in full messages (``jobs.dispatcher.pack``) and costs one release per many jobs.
    A job released then still starts behind at most ``max_queued`` jobs."""
    if state.paused:
        return 0
    room = limit
    if state.max_in_flight is not None:
        room = min(room, state.max_in_flight - state.queued - state.running)
    if max_queued:
        free = max_queued - state.queued
        room = min(room, free if 2 * free >= max_queued else 0)
    return max(0, room)


MIN_QUEUED = 10  # jobs of a queue the broker depth never goes below (a queue just woken)


class BrokerDepth:
    """How many jobs of each queue the dispatcher keeps waiting in the broker: about
    ``seconds`` of work at the rate it released the queue's jobs over the last ``window``
    seconds (in steady state, the rate workers take them), between a floor and ``maximum``;
    and at least ``full`` while that is at most twice ``seconds`` of work.

    ``full`` is enough for a full message for each of the pool processes that share a queue
    (JOBPLATFORM_BATCH_MAX x JOBPLATFORM_BATCH_SPREAD), or, when the queue's live workers have
    more pool slots than that covers (a threads pool, ``slots``), two jobs per slot. The floor
    is MIN_QUEUED, or one job per slot: a message for every slot as the queue wakes.

    A job released now starts behind at most that many of its queue, so the time it waits in
    the broker stays near ``seconds`` however fast or slow the workers are; the backlog beyond
    waits in PostgreSQL, where fair share and priority decide. Without ``full``, short jobs
    would be caught in a loop: a shallow broker makes small messages, small messages make
    workers slow (each message costs a hand-off), slow workers make the broker shallower
    (docs/performance.md). ``maximum`` 0: no bound; ``seconds`` 0: always ``maximum``.
    """

    def __init__(
        self,
        *,
        seconds: float,
        maximum: int,
        full: int = 0,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.maximum = maximum
        self.full = full
        self.window = window
        self.clock = clock
        self._released: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def released(self, queue: str, count: int) -> None:
        if count:
            self._released[queue].append((self.clock(), count))

    def depth(self, queue: str, *, slots: int = 0) -> int:
        """``slots``: the pool slots of the live workers consuming the queue (0: unknown)."""
        if not self.maximum or not self.seconds:
            return self.maximum
        recent = self._released[queue]
        cutoff = self.clock() - self.window
        while recent and recent[0][0] < cutoff:
            recent.popleft()
        rate = sum(count for _, count in recent) / self.window
        full = max(self.full, 2 * slots)
        depth = max(math.ceil(rate * self.seconds), min(full, math.ceil(rate * 2 * self.seconds)))
        return max(MIN_QUEUED, min(self.maximum, max(slots, depth)))


class PoolSlots:
    """Per queue, the pool slots (processes or threads) of the live workers that consume it, as
    ``read`` returns them (``jobplatform.liveness.worker_slots``), read again at most every
    ``every`` seconds: the dispatcher asks at every release, the liveness rows change every
    few seconds. 0 for a queue no live worker says it consumes."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, int]],
        *,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.every = every
        self.clock = clock
        self._slots: Mapping[str, int] = {}
        self._read_at: float | None = None

    def of(self, queues: Iterable[str]) -> dict[str, int]:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.every:
            slots = dict(self.read())
            if slots != self._slots:
                logger.info("pool slots of the live workers, per queue: %s", slots)
            self._slots, self._read_at = slots, now
        return {queue: self._slots.get(queue, 0) for queue in queues}


@dataclass(frozen=True)
class Lane:
    """One lane of waiting jobs: a queue, an owner, a priority and a state (pending or
    retrying), as the release's index orders them; ``due_at`` is when its first job is due."""

    queue: str
    owner_id: int
    priority: int
    status: str
    due_at: datetime
    weight: int = 1  # the owner's fair-share weight


def lane_quotas(lanes: Iterable[Lane], rooms: Mapping[str, int]) -> dict[Lane, int]:
    """How many jobs to read from each due lane: the owner's weighted share of its queue's room
    (rounded up), so that one release reads about as many jobs as it can release, however many
    owners wait. An owner with fewer jobs than its share leaves room for the next release."""
    by_queue: dict[str, dict[int, int]] = defaultdict(dict)
    due = [lane for lane in lanes if rooms.get(lane.queue, 0) > 0]
    for lane in due:
        by_queue[lane.queue][lane.owner_id] = lane.weight
    quotas = {}
    for lane in due:
        weights = by_queue[lane.queue]
        share = rooms[lane.queue] * lane.weight / sum(weights.values())
        quotas[lane] = max(1, math.ceil(share))
    return quotas


@dataclass(frozen=True)
class Candidate:
    """A due waiting job the release read (and locked): what the plan decides on."""

    id: UUID
    queue: str
    owner_id: int
    priority: int
    due_at: datetime
    created_at: datetime
    attempts: int = 0
    timeout: int = 3600
    concurrency_key: str | None = None
    max_concurrency: int = 1
    rate_limit: str | None = None
    hosts: tuple[str, ...] = ()

    @property
    def limits(self) -> tuple[str, ...]:
        """The names of the rate limits the job may count against: its own, then its hosts'."""
        named = (self.rate_limit,) if self.rate_limit is not None else ()
        return tuple(dict.fromkeys(named + self.hosts))

    @property
    def kind(self) -> str:
        return kind_of(self.attempts)

    @property
    def order(self) -> tuple[int, datetime, datetime, str]:
        """Within an owner and a kind: highest priority first, then FIFO."""
        return (-self.priority, self.due_at, self.created_at, str(self.id))


class Gate(Protocol):
    """A condition a job must meet to be released, checked in release order. A job it refuses
    is parked with ``reason`` as its hold (``Job.hold``) and leaves the lanes until the
    release's unparking for that reason brings it back (jobs.services.release.UNPARKERS)."""

    reason: str

    def admits(self, job: Candidate) -> bool: ...

    def take(self, job: Candidate) -> None:
        """``job`` is released: count it against what the gate limits."""


Key = tuple[int, str]  # (owner, concurrency_key): a key is its owner's


class ConcurrencyKeyGate:
    """A job with a concurrency key runs only while fewer than its ``max_concurrency`` jobs of
    that key (its owner's) are in flight (QUEUED or RUNNING), across every queue and worker."""

    reason = "concurrency_key"

    def __init__(self, in_flight: Mapping[Key, int]) -> None:
        self.in_flight: dict[Key, int] = dict(in_flight)

    def admits(self, job: Candidate) -> bool:
        if job.concurrency_key is None:
            return True
        return self.in_flight.get((job.owner_id, job.concurrency_key), 0) < job.max_concurrency

    def take(self, job: Candidate) -> None:
        if job.concurrency_key is not None:
            key = (job.owner_id, job.concurrency_key)
            self.in_flight[key] = self.in_flight.get(key, 0) + 1


class NamedGate:
    """A gate whose holds name what holds the job (a host, a limit): ``held_by[job.id]``, which
    the release stores with the job (``Job.held_by``) and its unparker reads."""

    reason = ""

    def __init__(self) -> None:
        self.held_by: dict[UUID, str] = {}

    def refuse(self, job: Candidate, name: str) -> bool:
        self.held_by[job.id] = name
        return False


class BreakerGate(NamedGate):
    """A job with an http host whose circuit breaker is not closed waits, except one probe per
    host whose breaker lets one through (open past its retry time, or half-open without a live
    probe): ``probes`` are the jobs that go as such, for the release to record."""

    reason = "circuit_breaker"

    def __init__(self, probe_allowed: Mapping[str, bool]) -> None:
        """``probe_allowed``: the hosts whose breaker is not closed -> whether a probe may go."""
        super().__init__()
        self.probe_allowed = dict(probe_allowed)
        self.probes: dict[str, UUID] = {}

    def admits(self, job: Candidate) -> bool:
        for host in job.hosts:
            if host in self.probe_allowed and not self.probe_allowed[host]:
                return self.refuse(job, host)
        return True

    def take(self, job: Candidate) -> None:
        for host in job.hosts:
            if host in self.probe_allowed:
                self.probe_allowed[host] = False
                self.probes[host] = job.id


class RateLimitGate(NamedGate):
    """A job takes one token of each rate limit it counts against; without one of them, it
    waits. ``tokens``: per configured limit, the tokens this release was granted (unused ones
    are handed back after the plan: ``left``)."""

    reason = "rate_limit"

    def __init__(self, tokens: Mapping[str, int]) -> None:
        super().__init__()
        self.left = dict(tokens)

    def admits(self, job: Candidate) -> bool:
        for name in job.limits:
            if name in self.left and self.left[name] < 1:
                return self.refuse(job, name)
        return True

    def take(self, job: Candidate) -> None:
        for name in job.limits:
            if name in self.left:
                self.left[name] -= 1


@dataclass
class Plan:
    """What one release does: the jobs it releases, in publish order, and those it parks."""

    release: list[Candidate] = field(default_factory=list)
    parked: dict[str, list[Candidate]] = field(default_factory=lambda: defaultdict(list))


InFlight = Mapping[tuple[str, int, str], int]  # (queue, owner, kind) -> jobs QUEUED or RUNNING


def plan_release(
    *,
    candidates: Iterable[Candidate],
    rooms: Mapping[str, int],
    in_flight: InFlight = {},  # noqa: B006 - read only
    weights: Mapping[int, int] = {},
    gates: Sequence[Gate] = (),
) -> Plan:
    """Hand out each queue's room one job at a time, fairly.

    Each turn goes to the owner with the fewest jobs in flight in the queue for its weight
    (those already in flight plus those this release took; ties: the heavier owner, then the
    one whose next job has the higher priority, then the earlier due time). Within the owner,
    to the kind, new jobs or retries, with fewer in flight, so that neither starves the other;
    within a kind, the highest priority, then FIFO. A job a gate refuses is parked and takes
    no room.
    """
    plan = Plan()
    by_queue: dict[str, list[Candidate]] = defaultdict(list)
    for job in candidates:
        by_queue[job.queue].append(job)
    for queue in sorted(by_queue):
        _plan_queue(plan, queue, by_queue[queue], rooms.get(queue, 0), in_flight, weights, gates)
    return plan


def _plan_queue(
    plan: Plan,
    queue: str,
    jobs: list[Candidate],
    room: int,
    in_flight: InFlight,
    weights: Mapping[int, int],
    gates: Sequence[Gate],
) -> None:
    waiting: dict[int, dict[str, deque[Candidate]]] = defaultdict(dict)
    for job in sorted(jobs, key=lambda j: j.order):
        waiting[job.owner_id].setdefault(job.kind, deque()).append(job)
    served = {
        (owner, kind): in_flight.get((queue, owner, kind), 0) for owner in waiting for kind in KINDS
    }

    def owner_turn(owner: int) -> tuple[float, int, int, datetime, int]:
        head = min((lane[0] for lane in waiting[owner].values()), key=lambda j: j.order)
        weight = weights.get(owner, 1)
        share = sum(served[owner, kind] for kind in KINDS) / weight
        return (share, -weight, -head.priority, head.due_at, owner)

    while room > 0 and waiting:
        owner = min(waiting, key=owner_turn)
        lanes = waiting[owner]
        kind = min(lanes, key=lambda k: (served[owner, k], lanes[k][0].order))
        job = lanes[kind].popleft()
        if not lanes[kind]:
            del lanes[kind]
            if not lanes:
                del waiting[owner]
        refusing = next((gate for gate in gates if not gate.admits(job)), None)
        if refusing is not None:
            plan.parked[refusing.reason].append(job)
            continue
        for gate in gates:
            gate.take(job)
        plan.release.append(job)
        served[owner, kind] += 1
        room -= 1
