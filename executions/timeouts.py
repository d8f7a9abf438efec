"""Per-step deadlines on every pool: SIGALRM on the main thread (prefork, solo), a watchdog
thread elsewhere (the threads pool, for I/O-bound queues).

On the main thread a ``SIGALRM`` timer is armed only while a step's own code runs, so the
platform's database writes around the step are never interrupted; Celery's hard ``time_limit``
(set on every run_job message, enforced by prefork) stays the backstop for code that never
returns to the interpreter.

Signals reach only the main thread, so a step running on another thread is watched by one
watchdog thread per worker process instead:

1. at the step's deadline it sets the attempt's stop event, which wakes the steps that wait on it
   (``sleep``, ``compute``, any step that honours cancellation); the ``http`` step's socket
   timeouts are already bounded by the deadline. A step that comes back past its deadline, by
   whatever way (returned, raised ``StepStopped``), ends as ``StepTimeout``;
2. a step still running ``JOBPLATFORM_STEP_ABANDON_AFTER`` seconds later (a busy loop that never
   looks at the event, a C call that outlasts it) has its attempt ended by the watchdog through
   ``abandon`` (the step result, ``STEP.TIMEOUT``, and the retry decision, as the step's thread
   would have), and then, as a best effort to get the thread back, ``StepTimeout`` is raised in
   it (``PyThreadState_SetAsyncExc``: it fires at the thread's next bytecode, so it stops Python
   code, but not a blocking C call). Whatever the thread writes when it comes back is fenced by
   the attempt and changes nothing.

The raise in another thread is kept for steps that did not stop on their own, after their
attempt is ended, because it can land in any bytecode, inside a library's code too (a lock taken
in Python code and never released). Celery's threads pool enforces no ``time_limit``: a thread
stuck for good keeps its slot until the worker restarts.
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
from typing import TypeVar

from django.conf import settings
from django.db import connection

from jobs.steps import StepTimeout

logger = logging.getLogger("jobplatform.executions")

T = TypeVar("T")


def run_within(
    seconds: float,
    run: Callable[[], T],
    *,
    stop: threading.Event | None = None,
    abandon: Callable[[], None] | None = None,
) -> T:
    """``run()``'s result if it returns within ``seconds``; else ``StepTimeout``.

    ``stop`` (the attempt's stop event) and ``abandon`` (ends the attempt without the step's
    thread) serve the watchdog only: the main thread's alarm interrupts any wait.
    """
    if seconds <= 0:
        raise StepTimeout("no time left of the attempt's timeout")
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            return run()
    return watchdog().run(seconds, run, stop=stop, abandon=abandon)


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


# armed: the step runs within its deadline; expired: past it, its stop event set; abandoning: the
# watchdog is ending the attempt; abandoned: ended, and StepTimeout raised in the step's thread;
# done: the step's thread left the step.
ARMED, EXPIRED, ABANDONING, ABANDONED, DONE = "armed", "expired", "abandoning", "abandoned", "done"


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
        # A plain Lock, whose acquire and release are C: a Condition's or an RLock's __enter__
        # is Python code, in which the raise could fire after the acquire and leak the lock.
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a deadline earlier than the watchdog's next one came
        self._due: list[tuple[float, int, Watch]] = []  # a heap, by deadline
        self._live = 0  # watches not done; done ones leave the heap lazily
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def run(
        self,
        seconds: float,
        run: Callable[[], T],
        *,
        stop: threading.Event | None = None,
        abandon: Callable[[], None] | None = None,
    ) -> T:
        """``run()`` under the watchdog's eye: see the module's docstring.

        A plain function, not a context manager: the raise in this thread fires at any bytecode,
        and contextlib's own code (or a generator closed later by the garbage collector) is no
        place to lose the leaving of the watch.
        """
        watch = Watch(threading.get_ident(), seconds, stop, abandon)
        try:
            try:
                self._arm(watch, time.monotonic() + seconds)
                return run()
            finally:
                self._leave(watch)
        finally:
            # The watchdog raises in a thread once per watch. If it fired in the finally above
            # before the watch was left, it cannot fire again here.
            if watch.state != DONE:
                self._leave(watch)

    def _arm(self, watch: Watch, when: float) -> None:
        with self._lock:
            self._ensure_thread()
            earliest = not self._due or when < self._due[0][0]
            self._push(when, watch)
            self._live += 1
        if earliest:
            self._wake.set()

    def _leave(self, watch: Watch) -> None:
        """The step's thread leaves the step: from now on nothing is raised in it."""
        with self._lock:
            previous, watch.state = watch.state, DONE
            if previous == DONE:  # left already; the raise fired after that
                return
            self._live -= 1
            if len(self._due) > 64 and len(self._due) > 2 * self._live:
                self._due = [entry for entry in self._due if entry[2].state != DONE]
                heapq.heapify(self._due)
        if previous == ARMED:
            return
        if previous == ABANDONED:
            # A StepTimeout still pending (the step came back before it fired) is withdrawn, so
            # it cannot fire in the platform's own code; if it fires before this line, it does
            # so inside the step's try, which is as good.
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
                with self._lock:
                    if watch.state == ABANDONING:
                        watch.state = EXPIRED
                        self._push(time.monotonic() + self.abandon_after, watch)
                        continue
            with self._lock:
                if watch.state == ABANDONING:
                    # Best effort to get the thread back: stops Python code, not a C call.
                    watch.state = ABANDONED
                    _raise_in(watch.thread_id, StepTimeout)
            watch.settled.set()

    def _next_to_abandon(self) -> Watch:
        """Expire the steps past their deadline as they come due; return one to abandon."""
        while True:
            self._wake.clear()  # before looking: a deadline pushed from now on sets it again
            expired: list[threading.Event] = []
            with self._lock:
                while self._due and self._due[0][2].state == DONE:
                    heapq.heappop(self._due)
                now = time.monotonic()
                abandoning = None
                while self._due and self._due[0][0] <= now and abandoning is None:
                    _, _, watch = heapq.heappop(self._due)
                    if watch.state == ARMED:
                        watch.state = EXPIRED
                        if watch.stop is not None:
                            expired.append(watch.stop)
                        self._push(now + self.abandon_after, watch)
                    elif watch.state == EXPIRED:
                        watch.state = ABANDONING
                        abandoning = watch
                wait = self._due[0][0] - now if self._due else None
            for stop in expired:
                stop.set()  # wakes the steps that wait on it (sleep, compute, ...)
            if abandoning is not None:
                logger.warning(
                    "a step ran %.3gs past its %.3gs deadline and did not stop: its attempt is"
                    " ended without it",
                    self.abandon_after,
                    abandoning.seconds,
                )
                return abandoning
            self._wake.wait(wait)


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
