"""Prometheus metrics counted where things happen (docs/operations.md#metrics).

Counters and histograms live here; the gauges read from PostgreSQL at scrape time (queue depth,
oldest due job, open dead letters, process heartbeats) are in ``jobplatform/api/metrics.py``.

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client keeps every value in a
memory-mapped file per process in that directory (a gunicorn worker, a Celery pool process, the
dispatcher), and a scrape adds up the files. ``make run`` gives every process one directory, so
the web server's ``/metrics`` answers for the whole machine. Where processes do not share a
directory (one container each), the worker's main process and the dispatcher serve the files of
their own directory on ``JOBPLATFORM_METRICS_PORT`` (:func:`serve`).

Cost: an increment is a lock and a write into the mapped file (about a microsecond); a worker
makes about ten per job (docs/performance.md has the measurement).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

logger = logging.getLogger("jobplatform.metrics")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each metric below opens its file there as it is made.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Seconds, from a no-op step to an hour-long job.
_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

JOBS_SUBMITTED = Counter(
    "jobplatform_jobs_submitted",
    "Jobs stored, by queue: API submissions, bulk submissions and schedule firings.",
    ["queue"],
)
ATTEMPTS_STARTED = Counter(
    "jobplatform_attempts_started", "Attempts a worker claimed, by queue.", ["queue"]
)
ATTEMPTS_FINISHED = Counter(
    "jobplatform_attempts_finished",
    "Attempts ended, by queue and outcome: succeeded; retried (failed, another attempt follows);"
    " failed (failed, the job is dead-lettered); cancelled (the job was cancelled or the attempt"
    " superseded); lost (no heartbeat: closed by the reaper).",
    ["queue", "outcome"],
)
DEAD_LETTERS = Counter(
    "jobplatform_dead_letters",
    "Jobs dead-lettered, by queue and reason (exhausted, permanent, timeout, lost).",
    ["queue", "reason"],
)
ATTEMPT_SECONDS = Histogram(
    "jobplatform_attempt_duration_seconds",
    "Seconds from an attempt's claim to its end, by queue.",
    ["queue"],
    buckets=_DURATIONS,
)
STEP_SECONDS = Histogram(
    "jobplatform_step_duration_seconds",
    "Seconds a step ran, by step type.",
    ["step_type"],
    buckets=_DURATIONS,
)
START_LAG = Histogram(
    "jobplatform_start_lag_seconds",
    "Seconds from when an attempt was due (run_at, or next_attempt_at for a retry) to its claim.",
    ["queue"],
    buckets=_DURATIONS,
)
RELEASE_BATCH = Histogram(
    "jobplatform_dispatcher_release_batch_size",
    "Jobs one dispatcher pass released and published.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
DISPATCHER_LOOP = Histogram(
    "jobplatform_dispatcher_loop_seconds",
    "Seconds of one dispatcher pass (release, publish, chores), its waits not counted.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PUBLISHED = Counter(
    "jobplatform_dispatcher_published",
    "run_job messages the dispatcher published, by why: due (released), lost (not started"
    " REDELIVER_AFTER after it was due), broker_lost (the broker lost its data), reaped (the next"
    " attempt of an attempt the reaper closed).",
    ["reason"],
)
BROKER_LOSSES = Counter(
    "jobplatform_broker_losses",
    "Times a dispatcher found the broker restarted or emptied, and published its jobs again.",
)


def multiprocess_dir() -> str | None:
    """The directory of every process's metric files, or None (one process, in memory)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry(*extra: Collector) -> CollectorRegistry:
    """A registry of this machine's (or container's) metrics plus ``extra`` collectors.

    A new one per scrape, as prometheus-client asks in multiprocess mode: the files are read at
    collection, never cached.
    """
    scrape = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.MultiProcessCollector(scrape, path=directory)  # type: ignore[no-untyped-call]
    else:
        scrape.register(_Default())
    for collector in extra:
        scrape.register(collector)
    return scrape


class _Default(Collector):
    """The process's own in-memory metrics (no multiprocess directory)."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()


def serve(*, port: int, addr: str) -> None:
    """Serve this process's directory (or memory) on ``addr:port`` from a daemon thread."""
    if multiprocess_dir() is None:
        logger.warning(
            "metrics on port %d without PROMETHEUS_MULTIPROC_DIR: pool processes are not counted",
            port,
        )
    start_http_server(port, addr=addr, registry=registry())
    logger.info("metrics on http://%s:%d/metrics", addr, port)
