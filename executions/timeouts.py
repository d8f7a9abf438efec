"""Per-step deadlines on every pool: SIGALRM on the main thread (prefork, solo), a watchdog
thread elsewhere (the threads pool, for I/O-bound queues).

On the main thread a ``SIGALRM`` timer is armed only while a step's own code runs, so the
platform's database writes around the step are never interrupted; Celery's hard ``time_limit``
(set on every run_job message, enforced by prefork) stays the backstop for code that never
returns to the interpreter.

Signals reach only the main thread, so a step running on another thread is watched by one
watchdog thread per worker process instead. When the step passes its deadline the watchdog

1. raises ``StepTimeout`` in the step's thread (``PyThreadState_SetAsyncExc``, the asynchronous
   twin of the signal handler's raise: it fires at the thread's next bytecode, so it stops
   pure-Python code, but not a blocking C call: a socket read, ``time.sleep``, a lock), and sets
   the attempt's stop event, which wakes the steps that wait on it (``sleep``, and any step that
   honours cancellation);
2. if the step has still not returned ``JOBPLATFORM_STEP_ABANDON_AFTER`` seconds later (stuck
   in C), ends the attempt itself through ``abandon`` (the step result, ``STEP.TIMEOUT``, and the
   retry decision, as the step's thread would have) and leaves the thread to its fate: whatever
   it writes when it comes back is fenced by the attempt and changes nothing.

Either way the step ends as ``StepTimeout``, as under SIGALRM. Celery's threads pool enforces no
``time_limit``: a thread stuck for good keeps its slot until the worker restarts.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from django.conf import settings
from django.db import connection

from jobs.steps import StepTimeout

logger = logging.getLogger("jobplatform.executions")


@contextmanager
def step_deadline(
    seconds: float,
    *,
    stop: threading.Event | None = None,
    abandon: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Run the block for at most ``seconds``, or raise ``StepTimeout``.

    ``stop`` (the attempt's stop event) and ``abandon`` (ends the attempt without the step's
    thread) serve the watchdog only: the main thread's alarm interrupts any wait.
    """
    if seconds <= 0:
        raise StepTimeout("no time left of the attempt's timeout")
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with watchdog().watch(seconds, stop=stop, abandon=abandon):
            yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(f"the step ran for more than {seconds:.3g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# armed: the step runs within its deadline; expired: past it, StepTimeout raised in its thread;
# abandoning: the watchdog is ending the attempt; done: the step's thread left the block.
ARMED, EXPIRED, ABANDONING, DONE = "armed", "expired", "abandoning", "done"


@dataclass(eq=False)
class Watch:
    """One step under the watchdog's eye."""

    thread_id: int
    seconds: float
    stop: threading.Event | None
    abandon: Callable[[], None] | None
    state: str = ARMED
    settled: threading.Event = field(default_factory=threading.Event)  # abandon() returned


class Watchdog:
    """Deadlines of the steps that run off the main thread: one thread per worker process."""

    def __init__(self, abandon_after: float) -> None:
        self.abandon_after = abandon_after
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Watch]] = []  # a heap, by deadline
        self._live = 0  # watches not done; done ones leave the heap lazily
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @contextmanager
    def watch(
        self,
        seconds: float,
        *,
        stop: threading.Event | None = None,
        abandon: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        watch = Watch(threading.get_ident(), seconds, stop, abandon)
        with self._cond:
            self._ensure_thread()
            self._push(time.monotonic() + seconds, watch)
            self._live += 1
            self._cond.notify()
        try:
            yield
        finally:
            self._leave(watch)

    def _leave(self, watch: Watch) -> None:
        """The step's thread leaves the block: from now on nothing is raised in it."""
        with self._cond:
            previous, watch.state = watch.state, DONE
            self._live -= 1
            if len(self._due) > 64 and len(self._due) > 2 * self._live:
                self._due = [entry for entry in self._due if entry[2].state != DONE]
                heapq.heapify(self._due)
        if previous == ARMED:
            return
        # Past the deadline. A StepTimeout still pending (the step returned before it fired) is
        # withdrawn, so it cannot fire in the platform's own code after the step; if it fires
        # before this line, it does so here, inside the step's try, which is as good.
        _raise_in(watch.thread_id, None)
        if previous == ABANDONING:
            watch.settled.wait()  # the watchdog's ending of the attempt commits first
        raise StepTimeout(f"the step ran for more than {watch.seconds:.3g}s")

    def _push(self, when: float, watch: Watch) -> None:
        heapq.heappush(self._due, (when, next(self._order), watch))

    def _ensure_thread(self) -> None:
        # Started per process, after any fork (a child inherits no running thread).
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            watch = self._next_to_abandon()
            try:
                if watch.abandon is not None:
                    watch.abandon()
            except Exception:
                # PostgreSQL is unreachable, say: the heartbeat still beats for the stuck
                # thread, so the reaper would not end the attempt either. Try again later.
                logger.exception("watchdog: could not end an abandoned attempt")
                connection.close()
                with self._cond:
                    if watch.state == ABANDONING:
                        watch.state = EXPIRED
                        self._push(time.monotonic() + self.abandon_after, watch)
                        continue
            watch.settled.set()

    def _next_to_abandon(self) -> Watch:
        """Expire the steps past their deadline as they come due; return one to abandon."""
        with self._cond:
            while True:
                while self._due and self._due[0][2].state == DONE:
                    heapq.heappop(self._due)
                if not self._due:
                    self._cond.wait()
                    continue
                when, _, watch = self._due[0]
                now = time.monotonic()
                if when > now:
                    self._cond.wait(when - now)
                    continue
                heapq.heappop(self._due)
                if watch.state == ARMED:
                    watch.state = EXPIRED
                    _raise_in(watch.thread_id, StepTimeout)
                    if watch.stop is not None:
                        watch.stop.set()
                    self._push(now + self.abandon_after, watch)
                elif watch.state == EXPIRED:
                    logger.warning(
                        "a step ran %.3gs past its %.3gs deadline and did not stop: its attempt"
                        " is ended without it",
                        self.abandon_after,
                        watch.seconds,
                    )
                    watch.state = ABANDONING
                    return watch


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in the thread at its next bytecode (None: withdraw a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc)
    )


_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def watchdog() -> Watchdog:
    """This process's watchdog."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = Watchdog(settings.JOBPLATFORM_STEP_ABANDON_AFTER)
        return _watchdog
