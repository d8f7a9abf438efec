"""What the API answers, as frozen dataclasses.

Each model has typed attributes for the fields the API documents (docs/api.md, docs/schedules.md,
docs/dead-letters.md) and ``raw``, the JSON object exactly as it came. A field the API adds later
is in ``raw`` before it has an attribute, and a field that is missing reads as ``None``: an answer
never fails to parse because the server is newer or older than this package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

M = TypeVar("M")
T = TypeVar("T")

# The states a job does not leave by itself (docs/api.md). A dead-letter retry can send a failed
# job back to pending, but nothing the worker or the dispatcher does will.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def parse_datetime(value: Any) -> datetime | None:
    """An API date-time (ISO 8601, ``Z`` for UTC) as an aware datetime; ``None`` stays ``None``."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _build(cls: type[M], data: Mapping[str, Any], **converted: Any) -> M:
    """``cls`` from an API object: every declared field from ``data`` (``None`` when absent), the
    ``converted`` ones as given, and ``raw`` the object itself. Unknown keys stay in ``raw``."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    values = {name: data.get(name) for name in names if name != "raw"}
    values.update(converted, raw=dict(data))
    return cls(**values)


def _datetimes(data: Mapping[str, Any], *names: str) -> dict[str, datetime | None]:
    return {name: parse_datetime(data.get(name)) for name in names}


def _dicts(value: Any) -> tuple[dict[str, Any], ...]:
    return tuple(item for item in value if isinstance(item, dict)) if value else ()


@dataclass(frozen=True, kw_only=True)
class StepError:
    """Why a step or an attempt failed (``last_error``, ``executions[].error``, a step's
    ``error``). ``code`` is a ``STEP.*`` code or ``EXECUTION.LOST``."""

    code: str
    message: str
    type: str | None = None
    permanent: bool | None = None
    step_index: int | None = None
    step_type: str | None = None
    attempt: int | None = None
    traceback: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> StepError | None:
        if not isinstance(data, dict):
            return None
        return _build(
            cls, data, code=str(data.get("code", "")), message=str(data.get("message", ""))
        )


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What one step did in one attempt."""

    index: int
    type: str
    status: str
    output: Any = None
    error: StepError | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> StepResult:
        return _build(
            cls,
            data,
            error=StepError.from_api(data.get("error")),
            **_datetimes(data, "started_at"),
        )


@dataclass(frozen=True, kw_only=True)
class Execution:
    """One attempt at a job: ``running``, ``succeeded``, ``failed``, ``cancelled`` or ``lost``."""

    attempt: int
    status: str
    worker: str | None = None
    delivery_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: StepError | None = None
    will_retry: bool | None = None
    retry_at: datetime | None = None
    steps: tuple[StepResult, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Execution:
        return _build(
            cls,
            data,
            error=StepError.from_api(data.get("error")),
            steps=tuple(StepResult.from_api(s) for s in _dicts(data.get("steps"))),
            **_datetimes(data, "started_at", "finished_at", "retry_at"),
        )


@dataclass(frozen=True, kw_only=True)
class CallbackDelivery:
    """One attempt to deliver a job's completion callback: ``pending``, ``delivered``,
    ``retrying`` (another attempt follows) or ``failed`` (none follows)."""

    delivery_id: str
    event: str
    attempt: int
    state: str
    target: str | None = None
    url: str | None = None
    status_code: int | None = None
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CallbackDelivery:
        return _build(
            cls,
            data,
            error=str(data.get("error") or ""),
            **_datetimes(data, "started_at", "finished_at"),
        )


@dataclass(frozen=True, kw_only=True)
class Job:
    """A job. In a list (a summary) the fields from ``steps`` on are ``None``; the detail, and
    every answer of submit, cancel and wait, has them all, ``executions`` oldest first."""

    id: str
    name: str
    status: str
    owner: str | None = None
    queue: str | None = None
    priority: int | None = None
    attempts: int = 0
    run_at: datetime | None = None
    schedule: str | None = None
    scheduled_for: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = field(default_factory=dict)
    # The detail only:
    steps: tuple[dict[str, Any], ...] | None = None
    input: Any = None
    max_retries: int | None = None
    retry_backoff: float | None = None
    retry_backoff_max: float | None = None
    retry_jitter: bool | None = None
    timeout: int | None = None
    next_step: int | None = None
    result: Any = None
    last_error: StepError | None = None
    next_attempt_at: datetime | None = None
    trace_id: str | None = None
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    callback_url: str | None = None  # POSTed to, signed, once the job ends
    executions: tuple[Execution, ...] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Job:
        steps = data.get("steps")
        executions = data.get("executions")
        return _build(
            cls,
            data,
            links=dict(data.get("links") or {}),
            steps=None if steps is None else _dicts(steps),
            last_error=StepError.from_api(data.get("last_error")),
            executions=(
                None
                if executions is None
                else tuple(Execution.from_api(e) for e in _dicts(executions))
            ),
            **_datetimes(
                data,
                "run_at",
                "scheduled_for",
                "created_at",
                "started_at",
                "finished_at",
                "next_attempt_at",
                "updated_at",
                "queued_at",
            ),
        )

    @property
    def is_terminal(self) -> bool:
        """``succeeded``, ``failed`` or ``cancelled``."""
        return self.status in TERMINAL


@dataclass(frozen=True, kw_only=True)
class BulkSubmission:
    """The answer to a bulk submission: the new jobs' ids, in the order they were sent."""

    count: int
    ids: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BulkSubmission:
        return _build(cls, data, ids=tuple(str(i) for i in data.get("ids") or ()))


@dataclass(frozen=True, kw_only=True)
class FireTime:
    """A coming tick of a schedule: ``at`` in the schedule's timezone, ``utc`` the same instant,
    ``local_time`` the wall-clock time the cron names, ``moved`` if a DST transition moved it."""

    at: datetime | None
    utc: datetime | None
    local_time: str | None = None
    moved: bool = False
    transition: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FireTime:
        return _build(cls, data, moved=bool(data.get("moved")), **_datetimes(data, "at", "utc"))


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A recurring schedule. ``job`` is its job template; ``recent_firings`` is in the detail."""

    id: str
    name: str
    cron: str
    timezone: str
    job: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    overlap: str | None = None
    misfire: str | None = None
    misfire_window: int | None = None
    misfire_cap: int | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    enabled: bool = True
    jitter: int | None = None
    pause_note: str = ""
    paused_at: datetime | None = None
    next_fire_at: datetime | None = None
    next_fire_times: tuple[FireTime, ...] = ()
    buffered_for: datetime | None = None
    last_fired_at: datetime | None = None
    recent_jobs: tuple[dict[str, Any], ...] = ()
    recent_firings: tuple[dict[str, Any], ...] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    links: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Schedule:
        firings = data.get("recent_firings")
        return _build(
            cls,
            data,
            job=dict(data.get("job") or {}),
            enabled=bool(data.get("enabled", True)),
            pause_note=str(data.get("pause_note") or ""),
            next_fire_times=tuple(
                FireTime.from_api(t) for t in _dicts(data.get("next_fire_times"))
            ),
            recent_jobs=_dicts(data.get("recent_jobs")),
            recent_firings=None if firings is None else _dicts(firings),
            links=dict(data.get("links") or {}),
            **_datetimes(
                data,
                "start_at",
                "end_at",
                "paused_at",
                "next_fire_at",
                "buffered_for",
                "last_fired_at",
                "created_at",
                "updated_at",
            ),
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleTrigger:
    """What ``POST .../trigger/`` did: ``created`` with the job, or ``buffered`` (no job yet)."""

    outcome: str
    scheduled_for: datetime | None = None
    job: Job | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ScheduleTrigger:
        job = data.get("job")
        return _build(
            cls,
            data,
            job=Job.from_api(job) if isinstance(job, dict) else None,
            **_datetimes(data, "scheduled_for"),
        )


@dataclass(frozen=True, kw_only=True)
class DeadLetterJob:
    """The job a dead letter is about, as the dead letter shows it."""

    id: str
    name: str
    status: str
    queue: str | None = None
    owner: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DeadLetterJob:
        return _build(cls, data)


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A failed job's dead letter. The detail adds the full ``error`` (with its traceback), the
    job as it was (``steps``, ``input``, ``retry_policy``), the audit ``actions`` and every
    attempt (``executions``); in a list those are ``None``."""

    id: int
    state: str
    reason: str
    job: DeadLetterJob
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    step_type: str | None = None
    step_index: int | None = None
    fingerprint: str | None = None
    attempts: int | None = None
    worker: str | None = None
    created_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str = ""
    links: dict[str, str] = field(default_factory=dict)
    # The detail only:
    error: StepError | None = None
    message_pattern: str | None = None
    steps: tuple[dict[str, Any], ...] | None = None
    input: Any = None
    retry_policy: dict[str, Any] | None = None
    notified_at: datetime | None = None
    actions: tuple[dict[str, Any], ...] | None = None
    executions: tuple[Execution, ...] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DeadLetter:
        steps, actions, executions = data.get("steps"), data.get("actions"), data.get("executions")
        return _build(
            cls,
            data,
            job=DeadLetterJob.from_api(data.get("job") or {}),
            note=str(data.get("note") or ""),
            links=dict(data.get("links") or {}),
            error=StepError.from_api(data.get("error")),
            steps=None if steps is None else _dicts(steps),
            actions=None if actions is None else _dicts(actions),
            executions=(
                None
                if executions is None
                else tuple(Execution.from_api(e) for e in _dicts(executions))
            ),
            **_datetimes(data, "created_at", "resolved_at", "notified_at"),
        )


@dataclass(frozen=True, kw_only=True)
class DeadLetterGroup:
    """Open dead letters that share a fingerprint (step type, error type, masked message)."""

    fingerprint: str
    count: int
    step_type: str | None = None
    error_type: str | None = None
    message_pattern: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    example: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DeadLetterGroup:
        return _build(
            cls,
            data,
            example=dict(data.get("example") or {}),
            **_datetimes(data, "first_seen", "last_seen"),
        )


@dataclass(frozen=True, kw_only=True)
class BulkOutcome:
    """A bulk retry or dismiss: how many entries were selected, acted on, and skipped (not in a
    state for the action)."""

    selected: int
    done: int
    skipped: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BulkOutcome:
        done = data.get("retried", data.get("dismissed", 0))
        return _build(cls, data, done=done)


@dataclass(frozen=True, kw_only=True)
class StepType:
    """A step type a job may use, with the JSON Schema of its parameters."""

    name: str
    description: str = ""
    params_schema: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> StepType:
        return _build(
            cls,
            data,
            description=str(data.get("description") or ""),
            params_schema=dict(data.get("params_schema") or {}),
        )


@dataclass(frozen=True, kw_only=True)
class Health:
    """``status`` is ``ok`` or ``degraded``; ``checks`` says which dependency failed."""

    status: str
    checks: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Health:
        return _build(cls, data, checks=dict(data.get("checks") or {}))


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a cursor-paginated list; ``next``/``previous`` are the API's links."""

    results: tuple[T, ...]
    next: str | None = None
    previous: str | None = None


def page_of(data: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]) -> Page[T]:
    """A ``{"next", "previous", "results"}`` answer with each result parsed by ``parse``."""
    return Page(
        results=tuple(parse(r) for r in _dicts(data.get("results"))),
        next=data.get("next"),
        previous=data.get("previous"),
    )
