"""The watchdog that keeps step deadlines off the main thread (executions/timeouts.py), in-process:
what a raise in another thread may and may not do. The worker end to end: test_io_pool.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from executions.timeouts import Watchdog, run_within
from jobs.steps import StepTimeout


def in_thread(body: Callable[[], Any]) -> Any:
    """``body``'s result, or the exception it raised, run on a thread that is not the main one."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(body())
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return outcome[0]


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_busy_python_code_on_another_thread_is_abandoned_and_stopped():
    dog = Watchdog(abandon_after=0.1)
    abandoned = threading.Event()

    def step() -> float:
        began = time.monotonic()
        try:
            dog.run(0.2, lambda: spin(20), abandon=abandoned.set)
        except StepTimeout:
            assert abandoned.is_set()
            return time.monotonic() - began
        raise AssertionError("not stopped")

    assert in_thread(step) < 10  # stopped, not left to spin for 20 s


def test_a_wait_on_the_stop_event_is_woken_and_ends_as_a_timeout():
    stop = threading.Event()

    def step() -> Any:
        # What the sleep step does; it would raise StepStopped on waking.
        return run_within(0.2, lambda: stop.wait(20), stop=stop)

    assert isinstance(in_thread(step), StepTimeout)
    assert stop.is_set()


def test_no_timeout_fires_after_the_step_even_when_it_ends_at_its_deadline():
    # Steps that end right when they are abandoned race the watchdog's raise: none may fire in
    # the platform's code after the step (here, the spin after each one), nor leak a lock.
    dog = Watchdog(abandon_after=0.002)

    def steps() -> int:
        timed_out = 0
        for _ in range(100):
            try:
                dog.run(0.002, lambda: spin(0.004))
            except StepTimeout:
                timed_out += 1
            spin(0.003)
        return timed_out

    # A StepTimeout raised into the spin after a step would escape the loop and be the outcome;
    # how many steps timed out depends on the race, so only their count comes back.
    assert isinstance(in_thread(steps), int)


def test_a_step_that_will_not_stop_is_abandoned_then_ends_as_a_timeout():
    dog = Watchdog(abandon_after=0.1)
    abandoned = threading.Event()

    def stuck() -> bool:
        time.sleep(1)  # one C call: nothing raised in the thread interrupts it
        return abandoned.is_set()  # the attempt was ended while the step was stuck

    def step() -> bool:
        with pytest.raises(StepTimeout):
            dog.run(0.1, stuck, abandon=abandoned.set)
        return abandoned.is_set()

    assert in_thread(step) is True
