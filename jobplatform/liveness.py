"""Is each process alive? Workers, dispatchers and beat write a row every few seconds.

Our own rows in PostgreSQL rather than Celery's ping: a ping travels through the broker (no
answer while Redis is down, which is when the question matters), waits out a timeout for the
silent, and knows nothing of the dispatcher. A row also says when a process was last seen after
it died, for the admin and the metrics.

- A worker's main process beats from a thread (``start_thread`` at ``worker_ready``).
- The dispatcher beats from its loop (a chore), so a stuck loop stops beating.
- beat beats from a thread (``beat_init``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from jobplatform.models import ProcessHeartbeat

logger = logging.getLogger("jobplatform.liveness")

# Silent for this many intervals: not alive.
SILENT_INTERVALS = 3
# Rows of processes silent this long are deleted (by the dispatcher).
FORGET_AFTER = timedelta(days=1)

_BEAT_SQL = """
INSERT INTO jobplatform_processheartbeat
    (role, name, hostname, pid, started_at, beat_at, details)
VALUES (%(role)s, %(name)s, %(hostname)s, %(pid)s, %(started_at)s, now(), %(details)s)
ON CONFLICT (role, name) DO UPDATE
SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
    beat_at = EXCLUDED.beat_at, details = EXCLUDED.details
"""


@dataclass(frozen=True)
class ProcessIdentity:
    """Who beats: the same row on every beat of one process."""

    role: str
    name: str
    hostname: str
    pid: int
    started_at: datetime
    details: str = "{}"  # JSON

    @classmethod
    def here(cls, role: str, name: str | None = None, details: str = "{}") -> ProcessIdentity:
        hostname, pid = socket.gethostname(), os.getpid()
        return cls(
            role=role,
            name=name or f"{hostname}:{pid}",
            hostname=hostname,
            pid=pid,
            started_at=timezone.now(),
            details=details,
        )


def process_beat(*, process: ProcessIdentity) -> None:
    """This process is alive now (one upsert; the database's clock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _BEAT_SQL,
            {
                "role": process.role,
                "name": process.name,
                "hostname": process.hostname,
                "pid": process.pid,
                "started_at": process.started_at,
                "details": process.details,
            },
        )


def process_forget_silent() -> int:
    """Delete the rows of processes silent for FORGET_AFTER; return how many."""
    deleted, _ = ProcessHeartbeat.objects.filter(beat_at__lt=timezone.now() - FORGET_AFTER).delete()
    return deleted


def silent_after() -> timedelta:
    return timedelta(seconds=SILENT_INTERVALS * settings.JOBPLATFORM_LIVENESS_INTERVAL)


@dataclass(frozen=True)
class ProcessStatus:
    role: str
    name: str
    hostname: str
    pid: int
    started_at: datetime
    beat_at: datetime
    age: float  # seconds since the last beat
    alive: bool
    details: dict[str, Any]


def process_list(*, role: str | None = None, hostname: str | None = None) -> list[ProcessStatus]:
    """Every known process (of ``role``, on ``hostname``), with whether it is alive."""
    rows = ProcessHeartbeat.objects.all()
    if role is not None:
        rows = rows.filter(role=role)
    if hostname is not None:
        rows = rows.filter(hostname=hostname)
    # The database's clock, the one that wrote beat_at; the time now, not the transaction's start.
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        now = cursor.fetchone()[0]
    limit = silent_after().total_seconds()
    statuses = []
    for row in rows:
        age = max(0.0, (now - row.beat_at).total_seconds())
        statuses.append(
            ProcessStatus(
                role=row.role,
                name=row.name,
                hostname=row.hostname,
                pid=row.pid,
                started_at=row.started_at,
                beat_at=row.beat_at,
                age=age,
                alive=age <= limit,
                details=row.details,
            )
        )
    return statuses


def worker_slots() -> dict[str, int]:
    """Per queue, the pool slots (processes or threads) of the live workers that consume it:
    the sum of their ``concurrency``, as each worker's row says (``jobplatform.celery``). A
    queue no live worker consumes, or whose workers' rows say nothing usable, is absent.

    One query on the small liveness table; the dispatcher reads it every few seconds
    (``jobs.flow.PoolSlots``) to size its messages and broker depth. A worker that stopped
    counts until its row falls silent (``SILENT_INTERVALS`` intervals)."""
    rows = ProcessHeartbeat.objects.filter(
        role=ProcessHeartbeat.Role.WORKER, beat_at__gte=Now() - silent_after()
    ).values_list("details", flat=True)
    slots: Counter[str] = Counter()
    for details in rows:
        if not isinstance(details, dict):
            continue
        concurrency, queues = details.get("concurrency"), details.get("queues")
        if type(concurrency) is not int or concurrency < 1 or not isinstance(queues, list):
            continue
        for queue in queues:
            if isinstance(queue, str):
                slots[queue] += concurrency
    return dict(slots)


class BeatThread:
    """Beats for ``process`` every interval from a daemon thread, with its own connection."""

    def __init__(self, process: ProcessIdentity, interval: float | None = None) -> None:
        self.process = process
        self.interval = interval or settings.JOBPLATFORM_LIVENESS_INTERVAL
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"liveness-{process.role}")
        self.thread.daemon = True

    def start(self) -> BeatThread:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                process_beat(process=self.process)
            except Exception as exc:  # PostgreSQL away: the process looks dead until it is back
                logger.warning("liveness beat failed: %s", exc)
                connection.close()
            if self.stop.wait(self.interval):
                connection.close()
                return
