"""Per-step deadlines that work with the prefork and solo pools (steps run on the main thread).

SIGALRM is armed only while a step's own code runs, so the platform's database writes around the
step are never interrupted. Celery's hard ``time_limit`` (set on every run_job message) stays the
backstop for code that never returns to the interpreter.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from jobs.steps import StepTimeout


@contextmanager
def step_deadline(seconds: float) -> Iterator[None]:
    if seconds <= 0:
        raise StepTimeout("no time left of the attempt's timeout")
    if threading.current_thread() is not threading.main_thread():
        # Signals reach only the main thread. Under the threads pool no deadline applies (and
        # Celery's threads pool ignores time limits too): use prefork or solo.
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(f"the step ran for more than {seconds:.3g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
