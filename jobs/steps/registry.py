"""The registry of step types: a name, a JSON Schema for its parameters and a function."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


@dataclass(frozen=True)
class StepContext:
    """What a running step may know about its job. Outputs of earlier steps are in ``outputs``."""

    job_id: UUID
    attempt: int  # 1-based number of this attempt of the job
    step_index: int  # 0-based position of this step in the pipeline
    input: Any
    outputs: Sequence[Any]
    timeout: float  # seconds this step may still take (its own timeout or the job's, enforced)
    # Set when the attempt must stop (the job was cancelled): long steps check it and raise
    # StepStopped, so a running job stops promptly rather than at the next step boundary.
    stop: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and redeliveries of this step: send it with side effects."""
        return f"{self.job_id}:{self.step_index}"


StepFunction = Callable[[dict[str, Any], StepContext], Any]


@dataclass(frozen=True)
class StepType:
    name: str
    schema: dict[str, Any]
    run: StepFunction
    description: str = ""
    validator: Draft202012Validator = field(repr=False, compare=False, kw_only=True)

    def validation_errors(self, params: Any) -> list[dict[str, str]]:
        """Every way ``params`` breaks the schema, as ``{"path", "message"}``; empty when valid."""
        errors = sorted(self.validator.iter_errors(params), key=lambda e: list(e.absolute_path))
        return [
            {"path": "/".join(str(p) for p in error.absolute_path), "message": error.message}
            for error in errors
        ]


_REGISTRY: dict[str, StepType] = {}


def step(
    name: str, *, schema: dict[str, Any], description: str = ""
) -> Callable[[StepFunction], StepFunction]:
    """Register ``run(params, ctx) -> output`` as step type ``name``. Outputs must be JSON."""

    def register(run: StepFunction) -> StepFunction:
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ImproperlyConfigured(f"step type {name!r} is registered twice")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ImproperlyConfigured(
                f"step {name!r} has an invalid schema: {exc.message}"
            ) from exc
        _REGISTRY[name] = StepType(
            name=name,
            schema=schema,
            run=run,
            description=description or (run.__doc__ or "").strip().split("\n")[0],
            validator=Draft202012Validator(schema),
        )
        return run

    return register


def get_step(name: str) -> StepType | None:
    return _REGISTRY.get(name)


def registered_steps() -> list[StepType]:
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


def load_step_modules() -> None:
    """Import the built-in steps and every module named in JOBPLATFORM_STEP_MODULES."""
    importlib.import_module("jobs.steps.builtin")
    for module in settings.JOBPLATFORM_STEP_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"JOBPLATFORM_STEP_MODULES names {module!r}, which cannot be imported: {exc}"
            ) from exc
