"""The dispatcher: releases due jobs from PostgreSQL into the broker, within their limits
(DESIGN §3, docs/architecture.md#flow-control), and fires the schedules whose tick has come
(docs/schedules.md).

It wakes on LISTEN/NOTIFY when a job is submitted or fails into a retry, otherwise sleeps until
the next job comes due or the next schedule tick (at most ``poll`` seconds, which also bounds how
long a missed notification can delay a job). While due jobs wait for room (a queue's cap, its
broker depth, a concurrency key), which finishing jobs free without notifying, it looks again
every ``held_poll`` seconds. It keeps about a quarter second of each queue's work in the broker
(``jobs.flow.BrokerDepth``), measured from its own releases. Any number of dispatchers may run:
releases take turns on an advisory lock and lock their rows, so none releases a job twice or
fills a room twice; the schedules' claim is ``FOR UPDATE SKIP LOCKED``, so none fires a tick
twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import psycopg
from celery import Celery
from celery.utils import uuid
from django.conf import settings
from django.db import connections
from django.utils import timezone

from jobplatform import brokers, metrics
from jobplatform.celery import app as celery_app
from jobplatform.db import direct_connect
from jobplatform.liveness import worker_slots
from jobplatform.outbox import outbox_flush
from jobs import services
from jobs.broker import BrokerWatch
from jobs.flow import BrokerDepth, PoolSlots
from jobs.schedules.firing import schedules_fire_due
from jobs.schedules.selectors import schedule_next_fire_at
from jobs.schedules.services import SCHEDULES_CHANNEL
from jobs.services import Release, ReleasedJob

logger = logging.getLogger("jobplatform.dispatcher")

HARD_TIME_LIMIT_MARGIN = 30  # seconds past a job's timeout before Celery kills the attempt

# Between slices of a wait the loop checks its stop flag, so SIGTERM is honoured within a second.
_WAIT_SLICE = 1.0
# A chore whose work is still due right after it ran (schedules another sweeper or an edit holds
# locked) runs again this much later, not in a busy loop.
_STILL_DUE_RETRY = 0.2


def publish_attempts(
    released: list[ReleasedJob],
    *,
    app: Celery = celery_app,
    batch_max: int | None = None,
    spread: int | None = None,
    queued: Mapping[str, int] | None = None,
    slots: Mapping[str, int] | None = None,
) -> list[ReleasedJob]:
    """Publish the released jobs, pipelined, as run_job messages or, under backlog, run_jobs
    messages of several jobs each (:func:`pack`; ``queued``: the jobs of each queue already
    QUEUED before these; ``slots``: the pool slots of the live workers of each queue); return
    the jobs that were published.

    On Redis the messages go in one pipeline (kombu's ``Producer.batch``), not one round trip
    each; RabbitMQ has no such batch, and kombu publishes each at once, waiting for its confirm.
    If the batch fails, which of its messages arrived is unknown, so none counts as published:
    the caller hands the jobs back, and a message that did arrive finds its job no longer QUEUED
    for that attempt and claims nothing.
    """
    if not released:
        return []
    batches = pack(
        released,
        most=batch_max if batch_max is not None else settings.JOBPLATFORM_BATCH_MAX,
        spread=spread if spread is not None else settings.JOBPLATFORM_BATCH_SPREAD,
        queued=queued,
        slots=slots,
    )
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=len(batches)):
            messages = RunJobMessages(app, producer)
            for batch in batches:
                messages.publish(batch)
    except Exception:
        logger.exception("publishing %d jobs failed", len(released))
        return []
    return list(released)


def pack(
    released: list[ReleasedJob],
    *,
    most: int,
    spread: int,
    queued: Mapping[str, int] | None = None,
    slots: Mapping[str, int] | None = None,
) -> list[list[ReleasedJob]]:
    """The released jobs, in release order, as the jobs of each message to publish.

    Jobs share a message only with jobs of their queue and priority (the broker orders messages
    by priority, and the pool process runs a message's jobs in turn, in release order). The n
    such jobs of a release go out in messages of k = min(``most``, (q + n) // s) jobs, at least
    one, where q is how many jobs of the queue were QUEUED before them (``queued``: waiting in
    the broker, or in a message a worker holds): what the queue has in the broker once they are
    published, spread over at least s messages, s being the pool slots of the queue's live
    workers (``slots``: processes, or a threads pool's threads, each of which runs one message
    at a time) and at least ``spread``. On an idle platform q is 0 and a release holds a job
    or a few, which go out one per message as before, so latency is unchanged; under backlog a
    release holds hundreds, or tops up a broker that holds more, and each message carries
    ``most`` — unless the queue has more slots than that would keep busy: 32 threads get 32
    messages, not four of 16 jobs run one after the other.
    """
    queued = queued or {}
    slots = slots or {}
    groups: dict[tuple[str, int], list[ReleasedJob]] = {}
    for job in released:
        groups.setdefault((job.queue, job.priority), []).append(job)
    batches: list[list[ReleasedJob]] = []
    for (queue, _), jobs in groups.items():
        spread_q = max(1, spread, slots.get(queue, 0))
        k = max(1, min(most, (queued.get(queue, 0) + len(jobs)) // spread_q))
        batches.extend(jobs[i : i + k] for i in range(0, len(jobs), k))
    return batches


def send_run_job(app: Celery, job: ReleasedJob, producer: Any) -> None:
    """Celery's own way to send a job's run_job message (what RunJobMessages reproduces)."""
    send_message(app, [job], producer)


def message_args(jobs: Sequence[ReleasedJob]) -> list[Any]:
    """run_job's arguments for one job, run_jobs' for several: (job id, attempt) of each, which
    Flower and the worker's log show as the task's arguments."""
    if len(jobs) == 1:
        return [str(jobs[0].id), jobs[0].attempt]
    return [[[str(job.id), job.attempt] for job in jobs]]


def message_retries(jobs: Sequence[ReleasedJob]) -> int:
    """Celery's count of earlier deliveries: a job's attempts before this one (a batch: 0)."""
    return jobs[0].attempt - 1 if len(jobs) == 1 else 0


def message_time_limit(jobs: Sequence[ReleasedJob]) -> int:
    """The backstop for a step that never yields to its own deadline: past it the pool process
    is killed, and the reaper sees its attempt's heartbeat stop. A batch's jobs run in turn, so
    its limit is the sum of their timeouts."""
    return sum(job.timeout for job in jobs) + HARD_TIME_LIMIT_MARGIN


def message_trace_headers(jobs: Sequence[ReleasedJob]) -> dict[str, Any]:
    """The trace ids of the message's jobs, for the worker's log lines: ``trace_id`` for one job,
    ``trace_ids`` (one per job, in the order of the arguments, "" for none) for a batch; none
    when no job has one."""
    if len(jobs) == 1:
        return {"trace_id": jobs[0].trace_id} if jobs[0].trace_id else {}
    ids = [job.trace_id for job in jobs]
    return {"trace_ids": ids} if any(ids) else {}


def send_message(app: Celery, jobs: Sequence[ReleasedJob], producer: Any) -> None:
    """Celery's own way to send the message of one job (run_job) or several (run_jobs)."""
    first = jobs[0]
    app.send_task(
        services.RUN_JOB_TASK if len(jobs) == 1 else services.RUN_JOBS_TASK,
        args=message_args(jobs),
        queue=first.queue,
        # The API's 9 is the most urgent: Redis serves 0 first, RabbitMQ 9.
        priority=brokers.message_priority(brokers.broker_kind(app.conf.broker_url), first.priority),
        # Celery's count of earlier deliveries of the task: Flower and the events show the
        # attempt after a failure as a retry (the failed one ended with Celery's Retry).
        retries=message_retries(jobs),
        time_limit=message_time_limit(jobs),
        # The worker binds them to each attempt's log lines.
        headers=message_trace_headers(jobs) or None,
        producer=producer,
    )


class _Recorder:
    """The producer as ``send_task`` sees it: what it publishes is kept as well as published."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.connection = producer.connection
        self.published: tuple[Any, dict[str, Any]] | None = None

    def publish(self, body: Any, **options: Any) -> Any:
        self.published = (body, options | {"headers": dict(options["headers"])})
        return self.producer.publish(body, **options)


class RunJobMessages:
    """The messages of one release: Celery builds and sends the first of each queue and task
    (run_job or run_jobs), the rest are copies of it with the fields that differ replaced.

    ``send_task`` re-reads a dozen settings through Django's lazy settings, re-routes, re-declares
    the queue and builds every header anew for each message: 70% of the dispatcher's CPU, 0.4 ms
    per job (docs/performance.md). Between two messages of a queue and task only the task id,
    the arguments, the priority, the retry count and the time limit differ;
    tests/jobs/test_dispatcher.py checks that a copy equals the message Celery builds for the
    same jobs. With task-sent events on (Flower), every message goes through ``send_task``,
    which sends them.
    """

    def __init__(self, app: Celery, producer: Any) -> None:
        self.app = app
        self.producer = producer
        self.each_by_celery = bool(app.conf.task_send_sent_event)
        self.broker = brokers.broker_kind(app.conf.broker_url)
        self.templates: dict[tuple[str, bool], tuple[Any, dict[str, Any]]] = {}

    def publish(self, jobs: Sequence[ReleasedJob]) -> None:
        key = (jobs[0].queue, len(jobs) > 1)
        if self.each_by_celery:
            send_message(self.app, jobs, self.producer)
        elif key in self.templates:
            body, options = self.build(jobs)
            self.producer.publish(body, **options)
        else:
            recorder = _Recorder(self.producer)
            send_message(self.app, jobs, recorder)
            assert recorder.published is not None
            self.templates[key] = recorder.published

    def build(self, jobs: Sequence[ReleasedJob]) -> tuple[Any, dict[str, Any]]:
        """The body and ``Producer.publish`` options of the message of ``jobs``, from the first
        of their queue and task."""
        first = jobs[0]
        body, options = self.templates[(first.queue, len(jobs) > 1)]
        task_id = uuid()
        args = message_args(jobs)
        headers = options["headers"].copy()
        if headers["root_id"] == headers["id"]:  # its own root: not sent from within a task
            headers["root_id"] = task_id
        headers["id"] = task_id
        headers["argsrepr"] = repr(args)
        headers["retries"] = message_retries(jobs)
        headers.pop("trace_id", None)
        headers.pop("trace_ids", None)
        headers.update(message_trace_headers(jobs))
        headers["timelimit"] = [message_time_limit(jobs), headers["timelimit"][1]]
        return (args, *body[1:]), options | {
            "headers": headers,
            "correlation_id": task_id,
            "priority": brokers.message_priority(self.broker, first.priority),
            "declare": None,  # the queue's first message declared it
        }


class Publish(Protocol):
    """How the dispatcher publishes what it released (``publish_attempts``; tests wrap it)."""

    def __call__(
        self,
        released: list[ReleasedJob],
        /,
        *,
        queued: Mapping[str, int] | None = None,
        slots: Mapping[str, int] | None = None,
    ) -> list[ReleasedJob]: ...


@dataclass
class Chore:
    """Periodic work the dispatcher process does between releases (finding lost work, firing
    schedules)."""

    name: str
    every: float  # seconds
    run: Callable[[], object]
    next_at: float = 0.0  # time.monotonic() of the next run
    # Asked after each run: seconds until the chore has work again (the next schedule tick), or
    # None. It runs then if that is sooner than ``every``.
    due_in: Callable[[], float | None] | None = None
    # A NOTIFY on this channel makes the chore due at once (a schedule now fires sooner).
    channel: str | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll: float | None = None,
        publish: Publish = publish_attempts,
        chores: Sequence[Chore] = (),
        queues: Sequence[str] | None = None,
        held_poll: float | None = None,
        schedules: bool = True,
    ) -> None:
        self.batch_size = batch_size or settings.JOBPLATFORM_DISPATCH_BATCH
        self.poll = poll if poll is not None else settings.JOBPLATFORM_DISPATCH_POLL
        self.held_poll = (
            held_poll if held_poll is not None else settings.JOBPLATFORM_DISPATCH_HELD_POLL
        )
        self.depth = BrokerDepth(
            seconds=settings.JOBPLATFORM_DISPATCH_QUEUED_SECONDS,
            maximum=settings.JOBPLATFORM_DISPATCH_MAX_QUEUED,
            full=settings.JOBPLATFORM_BATCH_MAX * settings.JOBPLATFORM_BATCH_SPREAD,
        )
        # The pool slots of each queue's live workers, from their liveness rows (which change
        # every liveness interval), read twice per interval: what messages are spread over.
        self.slots = PoolSlots(worker_slots, every=settings.JOBPLATFORM_LIVENESS_INTERVAL / 2)
        self.publish = publish
        self.queues = list(queues) if queues else None  # None: every queue
        self.broker = BrokerWatch(str(celery_app.conf.broker_url))
        self._broker_lost_before: datetime | None = None  # a loss not yet fully republished
        self._unpublished: list[ReleasedJob] = []  # marked as republished, not yet published
        self.chores = [
            Chore("release-lost", settings.JOBPLATFORM_REAPER_INTERVAL, self.release_lost),
            Chore("outbox", settings.JOBPLATFORM_REAPER_INTERVAL, self.flush_outbox),
            Chore(
                "broker-watch", settings.JOBPLATFORM_BROKER_CHECK_INTERVAL, self.recover_broker_loss
            ),
            *chores,
        ]
        if schedules:  # every queue's schedules, whatever queues the dispatcher releases
            # First of the chores: a tick comes before the look for lost work that is due with it.
            self.chores.insert(
                0,
                Chore(
                    "fire-schedules",
                    # At every tick (due_in), and every poll besides: a buffer_one tick fires
                    # within a poll of the end of the job it waited for.
                    self.poll,
                    schedules_fire_due,
                    due_in=self.seconds_until_next_tick,
                    channel=SCHEDULES_CHANNEL,
                ),
            )
        self._listener: psycopg.Connection | None = None

    def flush_outbox(self) -> int:
        """Publish the messages (callbacks, webhooks) whose publish after commit never happened."""
        return outbox_flush(older_than=settings.JOBPLATFORM_OUTBOX_REPUBLISH_AFTER)

    def release_lost(self) -> int:
        """Publish again the QUEUED jobs whose message never started them."""
        lost = services.job_release_lost(
            older_than=settings.JOBPLATFORM_REDELIVER_AFTER,
            limit=self.batch_size,
            queues=self.queues,
        )
        if not lost:
            return 0
        published = self.publish(lost, slots=self.slots_of(lost))
        metrics.PUBLISHED.labels("lost").inc(len(published))
        logger.warning("published %d of %d jobs whose message was lost", len(published), len(lost))
        return len(published)

    def slots_of(self, jobs: list[ReleasedJob]) -> dict[str, int]:
        """The pool slots of the queues of ``jobs``: republished jobs are spread like released
        ones."""
        return self.slots.of(dict.fromkeys(job.queue for job in jobs))

    def seconds_until_next_tick(self) -> float | None:
        """Seconds until the earliest schedule tick, None if no schedule will fire."""
        next_fire_at = schedule_next_fire_at()
        if next_fire_at is None:
            return None
        return (next_fire_at - timezone.now()).total_seconds()

    def recover_broker_loss(self) -> int:
        """If the broker lost its data, publish again every job whose message was on it."""
        lost_before = self.broker.check()
        if lost_before is not None:
            self._broker_lost_before = max(lost_before, self._broker_lost_before or lost_before)
        total = 0
        while self._unpublished or self._broker_lost_before is not None:
            lost = self._unpublished or services.job_release_after_broker_loss(
                lost_before=self._broker_lost_before or timezone.now(),
                limit=self.batch_size,
                queues=self.queues,
            )
            published = self.publish(lost, slots=self.slots_of(lost))
            total += len(published)
            if len(published) < len(lost):
                # The broker went again. The jobs are marked as published: keep them, and try
                # again at the next check.
                self._unpublished = lost
                logger.warning("publishing %d jobs after the broker's loss failed", len(lost))
                break
            self._unpublished = []
            if len(lost) < self.batch_size:
                self._broker_lost_before = None
        if total:
            metrics.PUBLISHED.labels("broker_lost").inc(total)
            logger.warning("published again %d jobs whose message the broker lost", total)
        return total

    def run_chores(self) -> float:
        """Run the chores that are due; return the seconds until the next one is."""
        for chore in self.chores:
            if time.monotonic() >= chore.next_at:
                chore.next_at = time.monotonic() + chore.every
                chore.run()
                due_in = chore.due_in() if chore.due_in is not None else None
                if due_in is not None:
                    due_at = time.monotonic() + max(due_in, _STILL_DUE_RETRY)
                    chore.next_at = min(chore.next_at, due_at)
        return max(0.0, min(c.next_at for c in self.chores) - time.monotonic())

    def release_once(self) -> Release:
        """Release what is due within its limits, publish it after the release commits, and
        say what to do next; ``jobs`` are the jobs published."""
        served = self.queues or settings.JOBPLATFORM_QUEUES
        slots = self.slots.of(served)
        release = services.job_release_due(
            limit=self.batch_size,
            queues=served,
            max_queued={queue: self.depth.depth(queue, slots=slots[queue]) for queue in served},
        )
        if not release.jobs:
            return release
        published = self.publish(release.jobs, queued=release.queued, slots=slots)
        metrics.RELEASE_BATCH.observe(len(published))
        metrics.PUBLISHED.labels("due").inc(len(published))
        for queue, count in Counter(job.queue for job in published).items():
            self.depth.released(queue, count)
        if len(published) < len(release.jobs):
            sent = {job.id for job in published}
            back = services.job_unrelease(job_ids=[j.id for j in release.jobs if j.id not in sent])
            logger.warning("handed %d unpublished jobs back to pending", back)
        logger.debug("released %d jobs", len(published))
        return replace(release, jobs=published)

    def dispatch_once(self) -> int:
        """One release; the number of jobs published."""
        return len(self.release_once().jobs)

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set; survive database and broker outages by retrying."""
        failures = 0
        while not stop.is_set():
            try:
                self._ensure_listening()
                began = time.perf_counter()
                release = self.release_once()
                failures = 0
                until_chore = self.run_chores()
                metrics.DISPATCHER_LOOP.observe(time.perf_counter() - began)
                if release.more:
                    continue  # more is due right now, and there is room for it
                self._wait(stop, min(until_chore, self._seconds_to_wait(release)))
            except Exception as exc:  # a database or broker outage must not end the dispatcher
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                logger.warning("dispatcher error (%s); retrying in %.1fs", exc, delay)
                self._close()
                stop.wait(delay)
        self._close()
        self.broker.close()

    def _seconds_to_wait(self, release: Release) -> float:
        """Until the next job comes due, or ``held_poll`` while due jobs wait for room."""
        wait = self.poll
        if release.waiting:
            wait = min(wait, self.held_poll)
        if release.next_due is not None:
            wait = min(wait, (release.next_due - timezone.now()).total_seconds())
        return max(0.0, wait)

    def _ensure_listening(self) -> None:
        if self._listener is not None and not self._listener.closed:
            return
        # A session of its own, straight to PostgreSQL even behind a transaction-mode pooler.
        self._listener = direct_connect(autocommit=True)
        for channel in [services.DISPATCH_CHANNEL, *(c.channel for c in self.chores if c.channel)]:
            self._listener.execute(f"LISTEN {channel}")

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep up to ``seconds``, returning early on a NOTIFY or on stop."""
        assert self._listener is not None
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            woke = False
            for notify in self._listener.notifies(
                timeout=min(remaining, _WAIT_SLICE), stop_after=1
            ):
                woke = True
                self._notified(notify.channel)
            if woke:
                # Drain whatever else arrived: one release pass serves every submission so far.
                for notify in self._listener.notifies(timeout=0):
                    self._notified(notify.channel)
                return

    def _notified(self, channel: str) -> None:
        for chore in self.chores:
            if chore.channel == channel:
                chore.next_at = 0.0  # due now

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        # After an error the Django connection may be broken; the next query opens a fresh one.
        connections.close_all()
