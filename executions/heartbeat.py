"""Heartbeats of running attempts, batched per worker process.

One daemon thread per worker process refreshes ``heartbeat_at`` of every attempt the process is
running with a single UPDATE per interval (not a query per job per second), and learns from the same
statement which of those attempts must stop: their job was cancelled, or the reaper already declared
the attempt lost. Steps see that through ``StepContext.stop`` and return early.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.db import connection

from executions.models import Execution
from jobs.lifecycle import IN_ATTEMPT, sql

logger = logging.getLogger("jobplatform.heartbeat")

_BEAT_SQL = f"""
UPDATE executions_execution AS e
SET heartbeat_at = now()
FROM jobs_job AS j
WHERE e.id = ANY(%s) AND e.status = {sql(Execution.Status.RUNNING)} AND j.id = e.job_id
RETURNING e.id, j.status, j.attempts = e.attempt
"""


class Heartbeat:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._running: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def track(self, execution_id: int) -> threading.Event:
        """Start beating for an attempt; the returned event is set when the attempt must stop."""
        stop = threading.Event()
        with self._lock:
            self._running[execution_id] = stop
            self._ensure_thread()
        return stop

    def untrack(self, execution_id: int) -> None:
        with self._lock:
            self._running.pop(execution_id, None)

    def beat_once(self) -> None:
        with self._lock:
            tracked = dict(self._running)
        if not tracked:
            return
        with connection.cursor() as cursor:
            cursor.execute(_BEAT_SQL, [list(tracked)])
            alive = {row[0] for row in cursor.fetchall() if row[1] in IN_ATTEMPT and row[2]}
        for execution_id, stop in tracked.items():
            if execution_id not in alive:
                stop.set()  # cancelled, reaped as lost, or superseded: stop at the next check

    def _ensure_thread(self) -> None:
        # A prefork child inherits no running thread: start one per process, after the fork.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            try:
                self.beat_once()
            except Exception:
                # A database outage: the beat is late, and the reaper may declare the attempt
                # lost; the fenced writes of the attempt then find nothing to update.
                logger.warning("heartbeat failed", exc_info=True)
                connection.close()


_heartbeat: Heartbeat | None = None


def heartbeat() -> Heartbeat:
    """This process's heartbeat (one per worker process)."""
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = Heartbeat(settings.JOBPLATFORM_HEARTBEAT_INTERVAL)
    return _heartbeat
