"""Gauges read from PostgreSQL when Prometheus scrapes the web server's ``/metrics``.

What a counter cannot tell is read from the database, which knows it exactly, at scrape time: the
queues' depth and oldest due job, the open dead letters, and how long ago each process beat. One
statement per source, each on a partial index, under a statement timeout so that a slow database
makes a scrape fail fast rather than pile up.

Flow control's waiting jobs by queue and reason are one more source. More sources join
``SOURCES``: a function that yields metric families.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deadletter.selectors import dead_letter_open_by_queue
from jobplatform.liveness import process_list
from jobplatform.models import ProcessRole
from jobs.selectors import WAITING_METRIC_REASONS, job_queue_states, job_waiting_by_reason

logger = logging.getLogger("jobplatform.metrics")

STATEMENT_TIMEOUT_MS = 5000
STATES = ("pending", "scheduled", "queued", "retrying", "running")
WAITING = ("pending", "queued", "retrying")  # the states with an oldest due age


def queue_metrics() -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "jobplatform_queue_jobs",
        "Unfinished jobs by queue and state (pending: due, waiting for the dispatcher; scheduled:"
        " pending, not yet due; queued; retrying; running).",
        labels=["queue", "state"],
    )
    oldest = GaugeMetricFamily(
        "jobplatform_queue_oldest_due_age_seconds",
        "Seconds the oldest job of a queue and state has waited: pending since run_at, queued"
        " since its message was published, retrying since its retry was due. 0 when none waits.",
        labels=["queue", "state"],
    )
    # Every configured queue and state, 0 when empty: a series that vanishes alerts no one.
    counts = {(q, state): (0, 0.0) for q in settings.JOBPLATFORM_QUEUES for state in STATES}
    for row in job_queue_states():
        counts[(row.queue, row.state)] = (row.count, row.oldest_due_age or 0.0)
    for (queue, state), (count, age) in sorted(counts.items()):
        depth.add_metric([queue, state], count)
        if state in WAITING:
            oldest.add_metric([queue, state], age)
    yield depth
    yield oldest


def waiting_metrics() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "jobplatform_jobs_waiting",
        "Waiting jobs (pending, retrying) by queue and why they wait, as waiting_for names it:"
        " run_at, retry_backoff, paused_queue, concurrency_key (parked), queue_cap, release.",
        labels=["queue", "reason"],
    )
    counts = {(q, r): 0 for q in settings.JOBPLATFORM_QUEUES for r in WAITING_METRIC_REASONS}
    counts |= job_waiting_by_reason()
    for (queue, reason), count in sorted(counts.items()):
        family.add_metric([queue, reason], count)
    yield family


def dead_letter_metrics() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "jobplatform_dead_letters_open", "Open dead letters, by queue.", labels=["queue"]
    )
    counts = dict.fromkeys(settings.JOBPLATFORM_QUEUES, 0) | dead_letter_open_by_queue()
    for queue, count in sorted(counts.items()):
        family.add_metric([queue], count)
    yield family


def process_metrics() -> Iterator[Metric]:
    age = GaugeMetricFamily(
        "jobplatform_process_heartbeat_age_seconds",
        "Seconds since each worker, dispatcher and beat process last said it was alive.",
        labels=["role", "name"],
    )
    alive = GaugeMetricFamily(
        "jobplatform_processes_alive",
        "Processes of each role alive (beat within three liveness intervals).",
        labels=["role"],
    )
    counts = dict.fromkeys(ProcessRole.values, 0)
    for process in process_list():
        age.add_metric([process.role, process.name], process.age)
        counts[process.role] = counts.get(process.role, 0) + int(process.alive)
    for role, count in counts.items():
        alive.add_metric([role], count)
    yield age
    yield alive


SOURCES: list[Callable[[], Iterable[Metric]]] = [
    queue_metrics,
    waiting_metrics,
    dead_letter_metrics,
    process_metrics,
]


class DatabaseCollector(Collector):
    """Every source, read in one transaction under a statement timeout."""

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "jobplatform_scrape_database_ok", "1 if the database gauges could be read, else 0."
        )
        families: list[Metric] = []
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                for source in SOURCES:
                    families.extend(source())
        except DatabaseError as exc:
            logger.warning("metrics: database gauges unavailable: %s", exc)
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from families
