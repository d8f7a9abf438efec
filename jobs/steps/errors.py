"""Transient versus permanent is a type. Anything else a step raises counts as transient."""

from __future__ import annotations


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

    def __init__(self, message: str) -> None:
        super().__init__(message, code="STEP.TIMEOUT")


class StepStopped(Exception):
    """Raised by a step that noticed ``ctx.stop`` (its job was cancelled): not a failure."""
