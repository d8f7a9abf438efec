"""``jobplatform``: the command line of the jobplatform API (docs/client.md).

Every command prints text for people, or with ``--output json`` the API's JSON for scripts
(errors then go to stderr as the API's error envelope). The exit code says how a job ended for
``submit --wait``/``--watch``, ``wait`` and ``watch``; see ``EXIT_CODES``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from jobplatform_client import __version__
from jobplatform_client.client import Client
from jobplatform_client.errors import ApiError, TransportError, WaitTimeout
from jobplatform_client.models import BulkOutcome, DeadLetter, Job, Schedule
from jobplatform_client.retry import RetryPolicy
from jobplatform_client.watch import JobChanges, describe_error, status_line

EXIT_OK = 0  # the command did what it was asked; a job waited for succeeded
EXIT_FAILED = 1  # the job waited for failed (also: health says degraded)
EXIT_ERROR = 2  # bad usage, or the API answered with an error
EXIT_CANCELLED = 3  # the job waited for was cancelled
EXIT_TIMEOUT = 4  # --timeout passed before the job ended (it goes on)
EXIT_UNREACHABLE = 5  # the API could not be reached
EXIT_INTERRUPTED = 130  # Ctrl-C (a job being watched goes on)

EXIT_CODES = """\
exit codes:
  0    done; with --wait/--watch, wait and watch: the job succeeded
  1    the job failed (health: degraded)
  2    usage error, or the API answered with an error (printed on stderr)
  3    the job was cancelled
  4    --timeout passed before the job ended; the job goes on
  5    the API could not be reached
  130  interrupted (Ctrl-C); a watched job goes on"""

# Fewer tries than the library's default: someone is waiting at the terminal, and an API that is
# down should say so within a second or two (a Retry-After is still honoured).
CLI_RETRY = RetryPolicy(attempts=3)

_JOB_EXIT = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class UsageError(Exception):
    """A command line that makes no sense; exit code 2 with the message."""


def job_exit_code(job: Job) -> int:
    """How the job ended, as an exit code; a job that has not ended is a timeout (4)."""
    return _JOB_EXIT.get(job.status, EXIT_TIMEOUT)


# --- reading values from the command line ------------------------------------------------------


def _json_or_text(text: str) -> Any:
    """A ``KEY=VALUE`` value: JSON when it parses (``3``, ``true``, ``[200]``, ``"007"``),
    else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _assignments(text: str) -> dict[str, Any]:
    """``a=1,b=two`` as ``{"a": 1, "b": "two"}``. A comma splits only before ``name=``, so a
    value may contain commas: ``message=hi, there``."""
    result: dict[str, Any] = {}
    for part in re.split(r",(?=\s*[A-Za-z_][\w.-]*=)", text):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"expected NAME=VALUE, got {part!r}")
        result[name.strip()] = _json_or_text(value)
    return result


def parse_step(text: str) -> dict[str, Any]:
    """``--step``: ``TYPE``, ``TYPE:NAME=VALUE,...`` or ``TYPE:{JSON params}``."""
    step_type, sep, rest = text.partition(":")
    if not step_type:
        raise UsageError(f"--step {text!r}: expected TYPE or TYPE:NAME=VALUE,...")
    if not sep or not rest.strip():
        return {"type": step_type}
    if rest.lstrip().startswith("{"):
        try:
            params = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--step {text!r}: the parameters are not valid JSON: {exc}") from None
    else:
        params = _assignments(rest)
    return {"type": step_type, "params": params}


def read_document(source: str) -> Any:
    """A JSON or YAML document from a file, or from stdin for ``-``."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml  # type: ignore[import-untyped, unused-ignore]  # only when a file is not JSON

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source} is neither JSON nor YAML: {exc}") from None


def parse_input(text: str) -> Any:
    """``--input``: JSON, or ``@FILE`` for a JSON or YAML file (``@-``: stdin)."""
    if text.startswith("@"):
        return read_document(text[1:])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input is not valid JSON ({exc}); use @FILE for a file") from None


def _sets(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--set NAME=VALUE`` options: one field each, the VALUE JSON when it parses."""
    result: dict[str, Any] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects NAME=VALUE, got {pair!r}")
        result[name] = _json_or_text(value)
    return result


def _filters(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The list filters given as options, then any ``--filter NAME=VALUE``."""
    filters = {name: getattr(args, name) for name in names if getattr(args, name, None)}
    for pair in args.filter or ():
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--filter expects NAME=VALUE, got {pair!r}")
        filters[name] = value
    return filters


# --- printing ------------------------------------------------------------------------------------


@dataclass
class Output:
    """Where and how a command prints."""

    json: bool
    out: TextIO
    err: TextIO

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=False), file=self.out)

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)  # a pipe (tee, a log) sees each line at once

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        rows = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        for row in [list(headers), *rows]:
            self.line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return _when(value)
    return str(value)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _short(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def print_job(out: Output, job: Job) -> None:
    """A job's detail for people: its fields, then each attempt with its steps."""
    out.line(f"job {job.id}  {job.name}")
    out.line(f"  status       {job.status}")
    for label, value in (
        ("queue", job.queue),
        ("priority", job.priority),
        ("attempts", f"{job.attempts} (max_retries {job.max_retries})"),
        ("run_at", _when(job.run_at)),
        ("created_at", _when(job.created_at)),
        ("started_at", _when(job.started_at)),
        ("finished_at", _when(job.finished_at)),
        ("schedule", job.schedule),
        ("trace_id", job.trace_id),
    ):
        if value not in (None, "-"):
            out.line(f"  {label:<12} {value}")
    for index, spec in enumerate(job.steps or ()):
        params = spec.get("params")
        out.line(f"  step {index + 1:<7} {spec.get('type')} {_compact(params) if params else ''}")
    if job.input not in (None, {}):
        out.line(f"  input        {_compact(job.input)}")
    if job.result is not None:
        out.line(f"  result       {_compact(job.result)}")
    if job.last_error is not None:
        out.line(f"  last_error   {describe_error(job.last_error)}")
    for execution in job.executions or ():
        worker = f" on {execution.worker}" if execution.worker else ""
        out.line(f"  attempt {execution.attempt}: {execution.status}{worker}")
        for step in execution.steps:
            took = "" if step.duration_ms is None else f" {step.duration_ms:.1f} ms"
            error = f"  {describe_error(step.error)}" if step.error else ""
            out.line(f"    step {step.index + 1} {step.type}: {step.status}{took}{error}")
        if execution.error is not None and execution.status != "succeeded":
            out.line(f"    error: {describe_error(execution.error)}")
        if execution.will_retry:
            out.line(f"    next attempt at {_when(execution.retry_at)}")


def print_dead_letter(out: Output, dead: DeadLetter) -> None:
    out.line(f"dead letter {dead.id}  {dead.state}  ({dead.reason})")
    out.line(f"  job          {dead.job.id}  {dead.job.name}  ({dead.job.status})")
    out.line(f"  error        {dead.error_code}: {dead.error_message}")
    if dead.step_index is not None:  # shown from 1, as everywhere here; the API counts from 0
        out.line(f"  step         {dead.step_index + 1} {dead.step_type} (index {dead.step_index})")
    out.line(f"  attempts     {dead.attempts}   worker {dead.worker}")
    out.line(f"  fingerprint  {dead.fingerprint}")
    out.line(f"  created_at   {_when(dead.created_at)}")
    if dead.resolved_at:
        out.line(f"  resolved     {_when(dead.resolved_at)} by {dead.resolved_by}: {dead.note}")
    for action in dead.actions or ():
        note = f": {action.get('note')}" if action.get("note") else ""
        out.line(
            f"  action       {action.get('created_at')} {action.get('kind')} by "
            f"{action.get('actor')}{note}"
        )
    if dead.error is not None and dead.error.traceback:
        out.line("  traceback:")
        for line in dead.error.traceback.rstrip().splitlines():
            out.line(f"    {line}")


def print_schedule(out: Output, schedule: Schedule) -> None:
    state = "enabled" if schedule.enabled else f"paused ({schedule.pause_note or 'no note'})"
    out.line(f"schedule {schedule.id}  {schedule.name}  {state}")
    out.line(f"  cron         {schedule.cron}  ({schedule.timezone})")
    out.line(f"  overlap      {schedule.overlap}   misfire {schedule.misfire}")
    out.line(f"  job          {_compact(schedule.job)}")
    for tick in schedule.next_fire_times:
        moved = f"  (moved: {tick.transition})" if tick.moved else ""
        out.line(f"  next         {tick.at.isoformat() if tick.at else '-'}{moved}")
    for job in schedule.recent_jobs:
        out.line(f"  recent job   {job.get('id')}  {job.get('status')}  {job.get('scheduled_for')}")


# --- the commands ------------------------------------------------------------------------------


@dataclass
class Context:
    client: Client
    out: Output
    args: argparse.Namespace

    def show(self, raw: Any, text: Callable[[], None]) -> int:
        """The API's JSON with ``--output json``, else what ``text`` prints."""
        if self.out.json:
            self.out.data(raw)
        else:
            text()
        return EXIT_OK


def _job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields given as options (they win over a file's)."""
    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.step:
        fields["steps"] = [parse_step(s) for s in args.step]
    if args.input is not None:
        fields["input"] = parse_input(args.input)
    for name in ("queue", "priority", "max_retries"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if getattr(args, "run_at", None) is not None:
        fields["run_at"] = args.run_at
    fields.update(_sets(args.set))
    return fields


def cmd_submit(ctx: Context) -> int:
    args = ctx.args
    document = read_document(args.file) if args.file else {}
    if isinstance(document, list) or (isinstance(document, dict) and "jobs" in document):
        return _submit_bulk(ctx, document)
    if not isinstance(document, dict):
        raise UsageError(f"{args.file}: expected a job (an object) or a list of jobs")
    body = {**document, **_job_fields(args)}
    if "name" not in body or "steps" not in body:
        raise UsageError("a job needs a name and steps: --name NAME --step TYPE[:NAME=VALUE,...]")
    job = ctx.client.jobs.submit_body(body, idempotency_key=args.idempotency_key)
    if args.watch:
        return _watch(ctx, job.id)
    if args.wait:
        return _wait(ctx, job.id)
    if ctx.out.json:
        ctx.out.data(job.raw)
    else:
        ctx.out.line(f"submitted job {job.id} ({job.name}): {job.status}")
    return EXIT_OK


def _submit_bulk(ctx: Context, document: Any) -> int:
    args = ctx.args
    jobs = document["jobs"] if isinstance(document, dict) else document
    if args.watch:
        raise UsageError("--watch follows one job; use --wait for a list of jobs")
    overrides = _job_fields(args)
    key = args.idempotency_key or (
        document.get("idempotency_key") if isinstance(document, dict) else None
    )
    batch = ctx.client.jobs.submit_many([{**job, **overrides} for job in jobs], idempotency_key=key)
    if not args.wait:
        if ctx.out.json:
            ctx.out.data(batch.raw)
        else:
            ctx.out.line(f"submitted {batch.count} jobs")
            for job_id in batch.ids:
                ctx.out.line(job_id)
        return EXIT_OK
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    finished = []
    for job_id in batch.ids:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        finished.append(ctx.client.jobs.wait(job_id, timeout=left))
    if ctx.out.json:
        ctx.out.data([job.raw for job in finished])
    else:
        ctx.out.table(["ID", "NAME", "STATUS"], [(j.id, j.name, j.status) for j in finished])
    codes = {job_exit_code(job) for job in finished}
    return next((c for c in (EXIT_FAILED, EXIT_CANCELLED) if c in codes), EXIT_OK)


def cmd_get(ctx: Context) -> int:
    job = ctx.client.jobs.get(ctx.args.id)
    return ctx.show(job.raw, lambda: print_job(ctx.out, job))


JOB_FILTERS = (
    "status",
    "queue",
    "name",
    "name_contains",
    "schedule",
    "created_after",
    "created_before",
    "trace_id",
    "step_type",
    "owner",
)


def cmd_list(ctx: Context) -> int:
    args = ctx.args
    filters = _filters(args, JOB_FILTERS)
    jobs = ctx.client.jobs.iter(page_size=min(args.limit, 500) if args.limit else 500, **filters)
    found = list(itertools.islice(jobs, args.limit or None))
    if ctx.out.json:
        ctx.out.data([job.raw for job in found])
        return EXIT_OK
    ctx.out.table(
        ["ID", "NAME", "STATUS", "QUEUE", "ATTEMPTS", "CREATED"],
        [(j.id, _short(j.name, 40), j.status, j.queue, j.attempts, j.created_at) for j in found],
    )
    return EXIT_OK


def cmd_cancel(ctx: Context) -> int:
    job = ctx.client.jobs.cancel(ctx.args.id)
    return ctx.show(job.raw, lambda: ctx.out.line(f"job {job.id} ({job.name}): {job.status}"))


def cmd_retry(ctx: Context) -> int:
    args = ctx.args
    job = ctx.client.jobs.retry(
        args.id,
        note=args.note,
        max_retries=args.max_retries,
        input=None if args.input is None else parse_input(args.input),
        from_step=args.from_step,
    )
    return ctx.show(job.raw, lambda: ctx.out.line(f"job {job.id} ({job.name}): {job.status}"))


def cmd_stats(ctx: Context) -> int:
    stats = ctx.client.jobs.stats(**_filters(ctx.args, ("queue", "status")))
    if ctx.out.json:
        ctx.out.data(stats)
        return EXIT_OK
    ctx.out.line(f"jobs: {stats.get('total', 0)}")
    by_status = stats.get("by_status") or {}
    ctx.out.line("by status: " + ", ".join(f"{k} {v}" for k, v in by_status.items() if v))
    oldest = stats.get("oldest_due_age_seconds")
    ctx.out.line("oldest due: " + ("none" if oldest is None else f"waiting {oldest:.1f}s"))
    hour = stats.get("last_hour") or {}
    rate = hour.get("failure_rate")
    ctx.out.line(
        f"last hour: {hour.get('succeeded', 0)} succeeded, {hour.get('failed', 0)} failed, "
        f"{hour.get('cancelled', 0)} cancelled; {hour.get('throughput_per_minute', 0)}/min; "
        f"failure rate {'-' if rate is None else f'{rate:.1%}'}"
    )
    return EXIT_OK


def cmd_wait(ctx: Context) -> int:
    return _wait(ctx, ctx.args.id)


def cmd_watch(ctx: Context) -> int:
    return _watch(ctx, ctx.args.id)


def _wait(ctx: Context, job_id: str) -> int:
    try:
        job = ctx.client.jobs.wait(job_id, timeout=ctx.args.timeout)
    except WaitTimeout as exc:
        job = exc.job
    if ctx.out.json:
        ctx.out.data(job.raw)
    else:
        ctx.out.line(f"job {job.id} ({job.name}): {job.status}")
        if job.last_error is not None and job.status == "failed":
            ctx.out.line(f"  {describe_error(job.last_error)}")
    if not job.is_terminal:
        print(f"still {job.status} after {ctx.args.timeout:g}s", file=ctx.out.err)
    return job_exit_code(job)


def _watch(ctx: Context, job_id: str) -> int:
    """Follow a job until it ends. On a terminal: a live status line under the events; otherwise
    (or with ``--output json``, which prints only the final job) one line per event."""
    args = ctx.args
    live = not ctx.out.json and ctx.out.out.isatty()
    fancy = live and (getattr(ctx.out.out, "encoding", "") or "").lower().startswith("utf")
    spinner = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if fancy else "|/-\\")
    changes = JobChanges()
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    interval, max_interval = args.interval, max(args.interval, 2.0)
    delay, next_poll = interval, 0.0
    job: Job | None = None
    try:
        while True:
            now = time.monotonic()
            if now >= next_poll:
                previous, job = job, ctx.client.jobs.get(job_id)
                changed = previous is None or previous.raw != job.raw
                if not ctx.out.json:
                    for event in changes.events(job):
                        prefix = f"[{now - started:6.1f}s] "
                        if live:
                            ctx.out.out.write("\r\x1b[K")
                        ctx.out.line(prefix + event)
                if job.is_terminal:
                    break
                delay = interval if changed else min(max_interval, delay * 1.5)
                next_poll = now + delay
            if deadline is not None and now >= deadline:
                break
            if live and job is not None:
                width = shutil.get_terminal_size().columns - 1
                line = status_line(job, elapsed=now - started, spinner=next(spinner), unicode=fancy)
                ctx.out.out.write("\r\x1b[K" + line[:width])
                ctx.out.out.flush()
            wake = next_poll if deadline is None else min(next_poll, deadline)
            left = wake - time.monotonic()
            time.sleep(max(0.0, min(left, 0.1) if live else left))
    except KeyboardInterrupt:
        if live:
            ctx.out.out.write("\r\x1b[K")
        print("stopped watching; the job goes on", file=ctx.out.err)
        return EXIT_INTERRUPTED
    assert job is not None
    if live:
        ctx.out.out.write("\r\x1b[K")
        ctx.out.out.flush()
    if ctx.out.json:
        ctx.out.data(job.raw)
    if not job.is_terminal:
        print(f"still {job.status} after {args.timeout:g}s; the job goes on", file=ctx.out.err)
    return job_exit_code(job)


# dead letters

DEAD_LETTER_FILTERS = ("state", "reason", "queue", "job", "error_code", "step_type")


def cmd_dead_letters_list(ctx: Context) -> int:
    args = ctx.args
    filters = _filters(args, DEAD_LETTER_FILTERS)
    page_size = min(args.limit, 500) if args.limit else 500
    found = list(
        itertools.islice(
            ctx.client.dead_letters.iter(page_size=page_size, **filters), args.limit or None
        )
    )
    if ctx.out.json:
        ctx.out.data([d.raw for d in found])
        return EXIT_OK
    ctx.out.table(
        ["ID", "STATE", "REASON", "JOB", "ERROR", "MESSAGE", "CREATED"],
        [
            (
                d.id,
                d.state,
                d.reason,
                _short(d.job.name, 30),
                d.error_code,
                _short(d.error_message, 50),
                d.created_at,
            )
            for d in found
        ],
    )
    return EXIT_OK


def cmd_dead_letters_show(ctx: Context) -> int:
    dead = ctx.client.dead_letters.get(ctx.args.id)
    return ctx.show(dead.raw, lambda: print_dead_letter(ctx.out, dead))


def _bulk_selection(args: argparse.Namespace) -> dict[str, Any] | None:
    """``None`` for one entry by id (the single-entry endpoint); else the bulk selection."""
    chosen = [bool(args.ids), args.group is not None, bool(args.filter)]
    if sum(chosen) != 1:
        raise UsageError("give entry ids, or --group FINGERPRINT, or --filter NAME=VALUE")
    if len(args.ids) == 1:
        return None
    if args.ids:
        return {"ids": args.ids}
    if args.group is not None:
        return {"group": args.group}
    return {"filter": _filters(args, ())}


def _bulk_done(ctx: Context, action: str, outcome: BulkOutcome) -> int:
    counts = f"selected {outcome.selected}, {action} {outcome.done}, skipped {outcome.skipped}"
    return ctx.show(outcome.raw, lambda: ctx.out.line(counts))


def cmd_dead_letters_retry(ctx: Context) -> int:
    args = ctx.args
    selection = _bulk_selection(args)
    overrides = {
        "max_retries": args.max_retries,
        "input": None if args.input is None else parse_input(args.input),
        "from_step": args.from_step,
    }
    if selection is not None:
        if any(v is not None for v in overrides.values()):
            raise UsageError("--max-retries, --input and --from-step apply to one entry only")
        outcome = ctx.client.dead_letters.retry_many(**selection, note=args.note)
        return _bulk_done(ctx, "retried", outcome)
    dead = ctx.client.dead_letters.retry(args.ids[0], note=args.note, **overrides)
    said = f"dead letter {dead.id}: {dead.state}; job {dead.job.id} is {dead.job.status}"
    return ctx.show(dead.raw, lambda: ctx.out.line(said))


def cmd_dead_letters_dismiss(ctx: Context) -> int:
    args = ctx.args
    selection = _bulk_selection(args)
    if selection is not None:
        outcome = ctx.client.dead_letters.dismiss_many(**selection, note=args.note)
        return _bulk_done(ctx, "dismissed", outcome)
    dead = ctx.client.dead_letters.dismiss(args.ids[0], note=args.note)
    return ctx.show(dead.raw, lambda: ctx.out.line(f"dead letter {dead.id}: {dead.state}"))


def cmd_dead_letters_groups(ctx: Context) -> int:
    groups = ctx.client.dead_letters.groups(limit=ctx.args.limit, **_filters(ctx.args, ()))
    if ctx.out.json:
        ctx.out.data([g.raw for g in groups])
        return EXIT_OK
    ctx.out.table(
        ["COUNT", "FINGERPRINT", "STEP", "ERROR", "PATTERN", "LAST SEEN"],
        [
            (
                g.count,
                g.fingerprint,
                g.step_type,
                g.error_type,
                _short(g.message_pattern, 50),
                g.last_seen,
            )
            for g in groups
        ],
    )
    return EXIT_OK


def cmd_dead_letters_stats(ctx: Context) -> int:
    stats = ctx.client.dead_letters.stats()
    if ctx.out.json:
        ctx.out.data(stats)
        return EXIT_OK
    ctx.out.line(f"open: {stats.get('open', 0)}")
    for key in ("by_reason", "by_queue"):
        counts = stats.get(key) or {}
        ctx.out.line(
            f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    return EXIT_OK


# schedules


def cmd_schedules_list(ctx: Context) -> int:
    found = list(ctx.client.schedules.iter())
    if ctx.out.json:
        ctx.out.data([s.raw for s in found])
        return EXIT_OK
    ctx.out.table(
        ["ID", "NAME", "CRON", "TIMEZONE", "STATE", "NEXT FIRE"],
        [
            (
                s.id,
                _short(s.name, 30),
                s.cron,
                s.timezone,
                "enabled" if s.enabled else "paused",
                s.next_fire_at,
            )
            for s in found
        ],
    )
    return EXIT_OK


def _print_schedule(ctx: Context, schedule: Schedule) -> int:
    return ctx.show(schedule.raw, lambda: print_schedule(ctx.out, schedule))


def cmd_schedules_show(ctx: Context) -> int:
    return _print_schedule(ctx, ctx.client.schedules.get(ctx.args.id))


def cmd_schedules_create(ctx: Context) -> int:
    args = ctx.args
    document = read_document(args.file) if args.file else {}
    if not isinstance(document, dict):
        raise UsageError(f"{args.file}: expected a schedule (an object)")
    body = dict(document)
    for name in ("name", "cron", "timezone", "overlap", "misfire", "jitter"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.paused:
        body["enabled"] = False
    template = dict(body.get("job") or {})
    if args.step:
        template["steps"] = [parse_step(s) for s in args.step]
    if args.input is not None:
        template["input"] = parse_input(args.input)
    if args.queue is not None:
        template["queue"] = args.queue
    if template:
        body["job"] = template
    body.update(_sets(args.set))
    if not all(name in body for name in ("name", "cron", "job")):
        raise UsageError("a schedule needs --name, --cron and its job's --step (or a FILE)")
    return _print_schedule(ctx, ctx.client.schedules.create_body(body))


def cmd_schedules_pause(ctx: Context) -> int:
    return _print_schedule(ctx, ctx.client.schedules.pause(ctx.args.id, note=ctx.args.note))


def cmd_schedules_resume(ctx: Context) -> int:
    return _print_schedule(ctx, ctx.client.schedules.resume(ctx.args.id))


def cmd_schedules_delete(ctx: Context) -> int:
    ctx.client.schedules.delete(ctx.args.id)
    said = f"deleted schedule {ctx.args.id}"
    return ctx.show({"deleted": ctx.args.id}, lambda: ctx.out.line(said))


def cmd_schedules_trigger(ctx: Context) -> int:
    fired = ctx.client.schedules.trigger(ctx.args.id)
    when = _when(fired.scheduled_for)
    said = (
        f"{fired.outcome}: job {fired.job.id} for {when}"
        if fired.job is not None
        else f"{fired.outcome}: the tick of {when} waits"
    )
    return ctx.show(fired.raw, lambda: ctx.out.line(said))


# the service


def cmd_steps(ctx: Context) -> int:
    steps = ctx.client.steps()
    if ctx.out.json:
        ctx.out.data([s.raw for s in steps])
        return EXIT_OK
    for step in steps:
        ctx.out.line(f"{step.name}: {step.description}")
        schema = step.params_schema
        required = set(schema.get("required", ()))
        for name, spec in (schema.get("properties") or {}).items():
            kind = spec.get("type") or (
                "one of " + "/".join(map(str, spec["enum"])) if "enum" in spec else "any"
            )
            mark = ", required" if name in required else ""
            ctx.out.line(f"  {name} ({kind}{mark})")
    return EXIT_OK


def cmd_health(ctx: Context) -> int:
    health = ctx.client.health()
    if ctx.out.json:
        ctx.out.data(health.raw)
    else:
        checks = ", ".join(f"{name} {value}" for name, value in health.checks.items())
        ctx.out.line(f"{health.status}: {checks}")
    return EXIT_OK if health.ok else EXIT_FAILED


# --- the parser ----------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. Their defaults are applied after
    parsing (SUPPRESS), so that a subcommand's parser does not overwrite the main one's."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    s = argparse.SUPPRESS
    group.add_argument(
        "--url", default=s, help="the API (env JOBPLATFORM_URL; default http://127.0.0.1:8000)"
    )
    group.add_argument("--token", default=s, help="an API token (env JOBPLATFORM_TOKEN)")
    group.add_argument("--api-key", default=s, help="an API key (env JOBPLATFORM_API_KEY)")
    group.add_argument(
        "--auth-scheme",
        default=s,
        help="the Authorization scheme (env "
        "JOBPLATFORM_AUTH_SCHEME; default Token, or Api-Key for a key)",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default=s,
        help="text for people (default), or the API's JSON for scripts",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=s,
        metavar="SECONDS",
        help="give up on one HTTP request after this long (default 30)",
    )
    return common


def _job_options(parser: argparse.ArgumentParser, *, with_file: bool = True) -> None:
    if with_file:
        parser.add_argument(
            "file",
            nargs="?",
            help="a job (JSON or YAML; - for stdin), or a "
            'list of jobs / {"jobs": [...]} to submit them in bulk',
        )
    parser.add_argument("--name", help="the job's name")
    parser.add_argument(
        "--step",
        action="append",
        metavar="TYPE[:NAME=VALUE,...]",
        help="a step, repeatable, in order: log:message=hi, sleep:seconds=1, "
        'http:{"url": "https://example.com/"}; a VALUE is JSON when it '
        "parses, else text",
    )
    parser.add_argument("--input", metavar="JSON|@FILE", help="the job's input")
    parser.add_argument("--queue")
    parser.add_argument("--priority", type=int, metavar="0-9")
    parser.add_argument("--max-retries", type=int, metavar="N")
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="any other field, repeatable: --set timeout=600 --set retry_backoff=5",
    )


def _filter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter",
        action="append",
        metavar="NAME=VALUE",
        help="any other list filter of the API, repeatable",
    )


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop waiting after this long (exit code 4; the job goes on)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="poll this often while the job changes (default 0.25)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="jobplatform",
        description="Submit, follow and manage jobplatform jobs. Set JOBPLATFORM_URL and "
        "JOBPLATFORM_TOKEN (or JOBPLATFORM_API_KEY), or use --url and --token.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: Any, name: str, handler: Callable[[Context], int], help: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    submit = command(commands, "submit", cmd_submit, "submit a job, from a file or options")
    _job_options(submit)
    submit.add_argument("--run-at", metavar="ISO8601", help="start at this instant (with offset)")
    submit.add_argument(
        "--idempotency-key", metavar="KEY", help="the submission's key (default: a new random one)"
    )
    submit.add_argument("--wait", action="store_true", help="wait until the job ends")
    submit.add_argument("--watch", action="store_true", help="follow the job until it ends")
    _wait_options(submit)

    get = command(commands, "get", cmd_get, "a job with its attempts and steps")
    get.add_argument("id")

    jobs = command(commands, "list", cmd_list, "your jobs, newest first")
    jobs.add_argument("--status", help="comma-separated: queued,running")
    jobs.add_argument("--queue")
    jobs.add_argument("--name", help="the exact name")
    jobs.add_argument("--name-contains", metavar="TEXT")
    jobs.add_argument("--schedule", metavar="ID", help="the jobs a schedule made")
    jobs.add_argument("--created-after", metavar="ISO8601")
    jobs.add_argument("--created-before", metavar="ISO8601")
    jobs.add_argument("--trace-id", metavar="ID")
    jobs.add_argument("--step-type", metavar="TYPE", help="jobs with a step of this type")
    jobs.add_argument("--owner", metavar="USERNAME", help="among the jobs you may see")
    _filter_option(jobs)
    jobs.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N jobs (default 50; 0: all)"
    )

    cancel = command(commands, "cancel", cmd_cancel, "cancel a job that has not ended")
    cancel.add_argument("id")

    retry = command(
        commands, "retry", cmd_retry, "retry a failed or cancelled job (closes its dead letter)"
    )
    retry.add_argument("id")
    retry.add_argument("--note", default="", help="why (kept in the dead letter's audit trail)")
    retry.add_argument("--max-retries", type=int, metavar="N", help="a new retry budget")
    retry.add_argument("--input", metavar="JSON|@FILE", help="replace the job's input")
    retry.add_argument("--from-step", type=int, metavar="N", help="resume at step N (0-based)")

    stats = command(commands, "stats", cmd_stats, "your jobs counted; the last hour")
    stats.add_argument("--queue")
    stats.add_argument("--status", help="comma-separated: queued,running")
    _filter_option(stats)

    wait = command(commands, "wait", cmd_wait, "wait quietly until a job ends")
    wait.add_argument("id")
    _wait_options(wait)

    watch = command(
        commands,
        "watch",
        cmd_watch,
        "follow a job live until it ends: each attempt and step as it happens",
    )
    watch.add_argument("id")
    _wait_options(watch)

    dead = commands.add_parser(
        "dead-letters", help="failed jobs: list, show, retry, dismiss", parents=[common]
    )
    dead_commands = dead.add_subparsers(dest="dead_command", required=True, metavar="COMMAND")
    dead_list = command(dead_commands, "list", cmd_dead_letters_list, "dead letters, newest first")
    dead_list.add_argument("--state", help="comma-separated: open,retried,dismissed")
    dead_list.add_argument("--reason", help="comma-separated: exhausted,permanent,timeout,...")
    dead_list.add_argument("--queue")
    dead_list.add_argument("--job", metavar="ID")
    dead_list.add_argument("--error-code", metavar="CODE")
    dead_list.add_argument("--step-type", metavar="TYPE")
    _filter_option(dead_list)
    dead_list.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N entries (default 50; 0: all)"
    )
    dead_show = command(
        dead_commands,
        "show",
        cmd_dead_letters_show,
        "an entry with its error, traceback and audit trail",
    )
    dead_show.add_argument("id", type=int)
    for name, handler, help in (
        ("retry", cmd_dead_letters_retry, "send failed jobs back to the queue"),
        ("dismiss", cmd_dead_letters_dismiss, "close entries without running the job again"),
    ):
        action = command(
            dead_commands, name, handler, f"{help}: one entry, several ids, a --group or a --filter"
        )
        action.add_argument("ids", nargs="*", type=int, metavar="ID")
        action.add_argument("--group", metavar="FINGERPRINT", help="the open entries of a group")
        _filter_option(action)
        action.add_argument("--note", default="", help="why, for the audit trail")
        if name == "retry":
            action.add_argument("--max-retries", type=int, metavar="N", help="a new budget")
            action.add_argument("--input", metavar="JSON|@FILE", help="replace the job's input")
            action.add_argument(
                "--from-step",
                type=int,
                metavar="INDEX",
                help="resume from an earlier step, by the API's index (the first step is 0)",
            )
    groups = command(
        dead_commands,
        "groups",
        cmd_dead_letters_groups,
        "entries grouped by fingerprint, largest first",
    )
    _filter_option(groups)
    groups.add_argument("--limit", type=int, metavar="N")
    command(dead_commands, "stats", cmd_dead_letters_stats, "open entries by reason and queue")

    schedules = commands.add_parser("schedules", help="recurring cron schedules", parents=[common])
    schedule_commands = schedules.add_subparsers(
        dest="schedule_command", required=True, metavar="COMMAND"
    )
    command(schedule_commands, "list", cmd_schedules_list, "your schedules, newest first")
    for name, handler, help in (
        ("show", cmd_schedules_show, "a schedule with its next fire times and recent jobs"),
        ("resume", cmd_schedules_resume, "fire again from the next tick"),
        ("trigger", cmd_schedules_trigger, "fire now, under the overlap policy"),
        ("delete", cmd_schedules_delete, "delete a schedule (its jobs stay)"),
    ):
        command(schedule_commands, name, handler, help).add_argument("id")
    pause = command(schedule_commands, "pause", cmd_schedules_pause, "stop firing until resumed")
    pause.add_argument("id")
    pause.add_argument("--note", default="", help="why")
    create = command(
        schedule_commands,
        "create",
        cmd_schedules_create,
        "create a schedule, from a file or options",
    )
    create.add_argument("file", nargs="?", help="a schedule (JSON or YAML; - for stdin)")
    create.add_argument("--name")
    create.add_argument("--cron", help="'*/5 * * * *', '@daily', ...")
    create.add_argument("--timezone", help="an IANA name (default UTC)")
    create.add_argument(
        "--step",
        action="append",
        metavar="TYPE[:NAME=VALUE,...]",
        help="a step of the job it makes, repeatable",
    )
    create.add_argument("--input", metavar="JSON|@FILE", help="the input of the job it makes")
    create.add_argument("--queue", help="the queue of the job it makes")
    create.add_argument("--overlap", choices=["allow", "skip", "buffer_one", "cancel_previous"])
    create.add_argument("--misfire", choices=["skip", "run_once", "run_all"])
    create.add_argument("--jitter", type=int, metavar="SECONDS")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="any other schedule field, repeatable"
    )

    command(commands, "steps", cmd_steps, "the step types and their parameters")
    command(commands, "health", cmd_health, "PostgreSQL and the broker as the API sees them")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(
        json=getattr(args, "output", "text") == "json",
        out=stdout or sys.stdout,
        err=sys.stderr,
    )
    try:
        client = Client(
            getattr(args, "url", None),
            token=getattr(args, "token", None),
            api_key=getattr(args, "api_key", None),
            auth_scheme=getattr(args, "auth_scheme", None),
            timeout=getattr(args, "request_timeout", 30.0),
            retry=CLI_RETRY,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with client:
            code: int = args.handler(Context(client=client, out=out, args=args))
            return code
    except UsageError as exc:
        print(f"jobplatform: error: {exc}", file=out.err)
        return EXIT_ERROR
    except ApiError as exc:
        _print_api_error(out, exc)
        return EXIT_ERROR
    except TransportError as exc:
        print(f"jobplatform: cannot reach the API: {exc}", file=out.err)
        return EXIT_UNREACHABLE
    except WaitTimeout as exc:  # a bulk --wait; single jobs report their state themselves
        print(f"jobplatform: {exc}", file=out.err)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _print_api_error(out: Output, exc: ApiError) -> None:
    if out.json:
        print(json.dumps(exc.as_dict()), file=out.err)
        return
    print(f"jobplatform: {exc.code} ({exc.status}): {exc.message}", file=out.err)
    if exc.details:
        print(f"  details: {_compact(exc.details)}", file=out.err)
    if exc.status == 401:
        print("  set JOBPLATFORM_TOKEN (or JOBPLATFORM_API_KEY), or use --token", file=out.err)
    if exc.retry_after is not None:
        print(f"  retry after {exc.retry_after:g}s", file=out.err)
