"""Transient versus permanent is a type. Anything else a step raises counts as transient."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from traceback import format_exception
from typing import Any

from jobplatform.text import storable


class StepError(Exception):
    permanent = False

    def __init__(self, message: str, *, code: str = "STEP.FAILED") -> None:
        super().__init__(message)
        self.code = code


class TransientStepError(StepError):
    """Worth retrying: a timeout, a 5xx, a connection refused."""


class PermanentStepError(StepError):
    """Retrying cannot help: a 4xx, a bad parameter the schema could not catch."""

    permanent = True


class StepTimeout(TransientStepError):
    """The step outlived its own timeout or what was left of the job's per-attempt timeout."""

    # The default message: the watchdog raises the class in the step's thread, without one.
    def __init__(self, message: str = "the step ran past its deadline") -> None:
        super().__init__(message, code="STEP.TIMEOUT")


class StepStopped(Exception):
    """Raised by a step that noticed ``ctx.stop`` (its job was cancelled): not a failure."""


@dataclass(frozen=True)
class AttemptError:
    """Why an attempt failed, as it crosses layers: the step loop, the retry policy, the job's
    ``last_error``, the Execution's ``error`` and the dead letter. Stored as :meth:`as_dict`."""

    type: str  # the exception's class name, or AttemptLost
    code: str  # STEP.*, EXECUTION.LOST
    message: str
    permanent: bool  # True: never retried (PermanentStepError)
    step_index: int | None = None
    step_type: str | None = None
    traceback: str | None = None
    attempt: int | None = None  # set once the attempt that failed is known to the record

    @classmethod
    def from_exception(cls, exc: BaseException, *, step_type: str, step_index: int) -> AttemptError:
        """A step's exception: StepErrors keep their code and kind; anything else is transient."""
        return cls(
            type=type(exc).__name__,
            code=exc.code if isinstance(exc, StepError) else "STEP.UNEXPECTED_ERROR",
            # What PostgreSQL cannot store would make the failure itself unrecordable.
            message=storable(str(exc)),
            permanent=isinstance(exc, StepError) and exc.permanent,
            step_index=step_index,
            step_type=step_type,
            traceback=storable("".join(format_exception(exc))),
        )

    @classmethod
    def lost(cls, *, worker: str, silent: float, attempt: int) -> AttemptError:
        """The attempt's heartbeat stopped: its worker was killed or cut off."""
        return cls(
            type="AttemptLost",
            code="EXECUTION.LOST",
            message=f"no heartbeat from worker {worker or '?'} for {silent:.0f}s",
            permanent=False,
            attempt=attempt,
        )

    @classmethod
    def orphaned(cls, *, silent: float, attempt: int) -> AttemptError:
        """The job was RUNNING with no running attempt (its Execution row was closed or deleted
        outside the platform): treated as a lost attempt."""
        return cls(
            type="AttemptLost",
            code="EXECUTION.LOST",
            message=f"the job was running with no live attempt for {silent:.0f}s",
            permanent=False,
            attempt=attempt,
        )

    def for_attempt(self, attempt: int) -> AttemptError:
        return replace(self, attempt=attempt)

    def as_dict(self) -> dict[str, Any]:
        """The stored JSON: the fields that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}
