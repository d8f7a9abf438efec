"""Logs: JSON lines (or a console format for ``make run``) carrying the context of a job.

Every process logs through the standard library's ``logging`` (our modules, Celery, Django,
gunicorn) and structlog's ``ProcessorFormatter`` renders each record with:

- ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``role`` (web, worker, dispatcher, beat...),
  ``pid``, ``message``;
- the ``fields`` a line passes (``logger.info("request", extra={"fields": {...}})``) and
  whatever is bound in the current context with :func:`bind`: ``trace_id`` (from the request that
  submitted the job, carried in the job row and in the run_job message's ``trace_id`` header),
  ``job_id``, ``attempt``, ``step`` and ``step_type``, ``task_id`` (the Celery task id, as Flower
  shows it);
- ``exception``: the traceback, when there is one.

Credentials are rewritten out of the message and the traceback first (``log_redaction``).

structlog rather than python-json-logger: its context variables follow a request or a task
through every logger without passing anything along (python-json-logger only formats; the
context would be ours to carry), it renders the same records as JSON or for a console, and it
takes the records of every library as they are.

This module imports neither Django nor Celery's worker: gunicorn's configuration uses it too.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.contextvars import (
    bind_contextvars,
    clear_contextvars,
    reset_contextvars,
    unbind_contextvars,
)
from structlog.types import EventDict, Processor

__all__ = [
    "bind",
    "clear",
    "logging_config",
    "process_role",
    "reset",
    "traced_strategy",
    "unbind",
]

FORMATS = ("json", "console")

bind = bind_contextvars
clear = clear_contextvars
reset = reset_contextvars
unbind = unbind_contextvars


def process_role(argv: Sequence[str] | None = None) -> str:
    """What this process is, from its command line (``JOBPLATFORM_PROCESS_ROLE`` overrides it).

    gunicorn or runserver: ``web``; ``celery worker|beat|flower``: that word; ``manage.py
    run_dispatcher``: ``dispatcher``; another management command: its name; else ``python``.
    """
    explicit = os.environ.get("JOBPLATFORM_PROCESS_ROLE")
    if explicit:
        return explicit
    argv = list(sys.argv if argv is None else argv)
    program = argv[0] if argv else ""
    if "gunicorn" in program:
        return "web"
    if "celery" in program:
        return next((a for a in argv[1:] if a in ("worker", "beat", "flower")), "celery")
    if program.endswith("manage.py") and len(argv) > 1:
        command = argv[1]
        return {"run_dispatcher": "dispatcher", "runserver": "web"}.get(command, command)
    if "pytest" in program:
        return "test"
    return "python"


def _standard_fields(role: str) -> Processor:
    """time (UTC, ISO 8601, when the record was made), level, logger, role, pid and the line's
    own fields: one processor rather than structlog's five (add_log_level, add_logger_name,
    TimeStamper...), since every line pays for each."""

    def add(_logger: Any, _name: str, event: EventDict) -> EventDict:
        record = event["_record"]  # every line is a ``logging`` record
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat()
        event["time"] = stamp.replace("+00:00", "Z")
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["role"] = role
        event["pid"] = os.getpid()  # after a fork too: a pool process logs its own
        # Celery's own task lines carry their task id in ``extra={"data": ...}``: keep it.
        data = getattr(record, "data", None)
        if isinstance(data, Mapping) and "id" in data:
            event.setdefault("task_id", data["id"])
        fields = getattr(record, "fields", None)  # ours: logger.info(..., extra={"fields": {}})
        if fields:
            event.update(fields)
        if record.exc_text:  # the traceback as the redaction filter left it
            event["exception"] = record.exc_text
            event.pop("exc_info", None)
        return event

    return add


# What a reader looks for first comes first on a JSON line.
_FIRST = ("time", "level", "role", "pid", "logger", "message", "trace_id", "job_id", "attempt")
_META = ("_record", "_from_structlog")
_dumps = json.JSONEncoder(default=str, ensure_ascii=False).encode


def _json_line(_logger: Any, _name: str, event: EventDict) -> str:
    """The event as one JSON object: the first keys first, the traceback as ``exception``."""
    for key in _META:
        event.pop(key, None)
    event["message"] = event.pop("event", "")
    if event.get("exc_info"):
        event = structlog.processors.format_exc_info(_logger, _name, event)
    line = {key: event.pop(key) for key in _FIRST if key in event}
    line.update(event)
    return _dumps(line)


def pre_chain(role: str) -> list[Processor]:
    """What every record goes through."""
    return [structlog.contextvars.merge_contextvars, _standard_fields(role)]


def renderers(fmt: str) -> list[Processor]:
    """What turns a record into a line of ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"JOBPLATFORM_LOG_FORMAT must be one of {FORMATS}, not {fmt!r}")
    if fmt == "json":
        return [_json_line]
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.dev.ConsoleRenderer(colors=False, timestamp_key="time"),
    ]


def logging_config(*, fmt: str, level: str, role: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: every record to stdout, rendered as ``fmt``.

    ``LOGGING`` in the settings (web, dispatcher, worker, beat) and gunicorn's own loggers
    (gunicorn.conf.py) both come from here.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": pre_chain(role or process_role()),
                "processors": renderers(fmt),
            }
        },
        # Credentials (Authorization values, tokens, URL passwords) are rewritten out of every
        # line, tracebacks included (jobplatform/log_redaction.py).
        "filters": {"redact": {"()": "jobplatform.log_redaction.RedactSecrets"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "filters": ["redact"],
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # gunicorn configures these itself (gunicorn.conf.py hands them this config);
            # our middleware logs one line per request, so its access log is not needed.
            "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }


# --- Celery: the worker's main process --------------------------------------------------------

# A run_job message's arguments as Celery shows them: "['<job id>', <attempt>]".
_RUN_JOB_ARGS = re.compile(r"\['([0-9a-f-]{36})', (\d+)\]")


def message_context(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The log context of a run_job message, from its headers alone (no decoding of the body)."""
    context: dict[str, Any] = {"task_id": headers.get("id")}
    if headers.get("trace_id"):
        context["trace_id"] = headers["trace_id"]
    args = _RUN_JOB_ARGS.fullmatch(headers.get("argsrepr") or "")
    if args is not None:
        context["job_id"], context["attempt"] = args.group(1), int(args.group(2))
    return context


def traced_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """Celery's default strategy for a task, with the message's context bound while it runs.

    The worker's main process logs "Task ... received" from inside the strategy, before any
    signal fires; binding here puts the trace and job ids on that line too. The context is
    reset when the handler returns: the main process handles many messages.
    """
    from celery.worker.strategy import default

    handle = default(task, app, consumer, **kwargs)

    def on_message(message: Any, *args: Any, **kw: Any) -> Any:
        tokens = bind(**message_context(message.headers or {}))
        try:
            return handle(message, *args, **kw)
        finally:
            reset(**tokens)

    return on_message


def bind_task(request: Any, task_name: str, args: Sequence[Any] | None) -> None:
    """At the start of a task in a pool process: a fresh context with the task's ids."""
    clear()
    context: dict[str, Any] = {"task_id": request.id}
    trace_id = request.get("trace_id")
    if trace_id:
        context["trace_id"] = trace_id
    if task_name == "executions.run_job" and args and len(args) == 2:
        context["job_id"], context["attempt"] = str(args[0]), args[1]
    bind(**context)
