"""Following a job as it runs: what changed between two snapshots, as lines of text, and a
one-line live status for a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobplatform_client.models import Execution, Job, StepError, StepResult

_BAR_WIDTH = 20


def describe_error(error: StepError | None) -> str:
    if error is None:
        return ""
    return f"{error.code}: {error.message}" if error.code else error.message


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%SZ") if moment else "?"


def _step_line(attempt: int, step: StepResult, total: int | None) -> str:
    of = f"/{total}" if total else ""
    took = f" in {step.duration_ms:.0f} ms" if step.duration_ms is not None else ""
    line = f"attempt {attempt} step {step.index + 1}{of} {step.type}: {step.status}{took}"
    if step.error is not None:
        line += f" ({describe_error(step.error)})"
    return line


def _attempt_end(execution: Execution) -> str:
    line = f"attempt {execution.attempt} {execution.status}"
    if execution.error is not None:
        line += f": {describe_error(execution.error)}"
    if execution.will_retry:
        line += f"; next attempt at {_clock(execution.retry_at)}"
    return line


def _final(job: Job) -> str:
    took = ""
    if job.created_at and job.finished_at:
        took = f" {(job.finished_at - job.created_at).total_seconds():.1f}s after submission"
    attempts = f"{job.attempts} attempt{'s' if job.attempts != 1 else ''}"
    line = f"job {job.status} after {attempts},{took}".rstrip(",")
    if job.status == "failed" and job.last_error is not None:
        line += f": {describe_error(job.last_error)}"
    stopping = [e.attempt for e in job.executions or () if e.status == "running"]
    if stopping:  # a cancelled attempt stops at its worker's next heartbeat
        line += f"; attempt {stopping[-1]} is stopping"
    return line


@dataclass
class JobChanges:
    """Remembers what has been shown of a job, and says what is new in each snapshot."""

    shown_status: str | None = None
    attempts: dict[int, str] = field(default_factory=dict)  # attempt -> status shown
    steps: set[tuple[int, int]] = field(default_factory=set)  # (attempt, step index) shown

    def events(self, job: Job) -> list[str]:
        """Lines for what happened since the last snapshot, oldest first: each new attempt, its
        steps as they finished and its end, then the job's new status."""
        lines = []
        if self.shown_status is None:
            total = len(job.steps or ())
            lines.append(f"job {job.id} {job.name!r}: {total} step{'s' if total != 1 else ''}")
        total_steps = len(job.steps) if job.steps else None
        started = False
        for execution in job.executions or ():
            if execution.attempt not in self.attempts:
                worker = f" on {execution.worker}" if execution.worker else ""
                lines.append(f"attempt {execution.attempt} started{worker}")
                self.attempts[execution.attempt] = "running"
                started = True
            for step in execution.steps:
                if (execution.attempt, step.index) not in self.steps:
                    self.steps.add((execution.attempt, step.index))
                    lines.append(_step_line(execution.attempt, step, total_steps))
            if execution.status != "running" and self.attempts[execution.attempt] == "running":
                self.attempts[execution.attempt] = execution.status
                lines.append(_attempt_end(execution))
        if job.status != self.shown_status:
            if job.is_terminal:
                lines.append(_final(job))
            elif not (job.status == "running" and started):  # "attempt N started" said it
                lines.append(f"status {job.status}{_status_hint(job, datetime.now(UTC))}")
            self.shown_status = job.status
        return lines


def _status_hint(job: Job, now: datetime) -> str:
    """What a waiting job waits for."""
    waiting_for = job.raw.get("waiting_for")  # flow control, where the server reports it
    if waiting_for:
        return f" (waiting for {_plain(waiting_for)})"
    if job.status == "pending" and job.run_at and job.run_at > now:
        return f" (starts in {_duration((job.run_at - now).total_seconds())})"
    if job.status == "retrying" and job.next_attempt_at:
        left = (job.next_attempt_at - now).total_seconds()
        return f" (next attempt in {_duration(left)})" if left >= 0.5 else " (next attempt due)"
    return ""


def _plain(value: object) -> str:
    """A JSON value in a few words: a dict as ``key=value, ...``, a list comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_bar(done: int, total: int, width: int = _BAR_WIDTH, unicode: bool = True) -> str:
    full, empty = ("█", "░") if unicode else ("#", "-")
    filled = 0 if total <= 0 else round(width * min(done, total) / total)
    return "[" + full * filled + empty * (width - filled) + "]"


def status_line(job: Job, *, elapsed: float, spinner: str = "", unicode: bool = True) -> str:
    """The job now, in one line: status, attempt, the step running and a progress bar."""
    total = len(job.steps or ())
    done = min(job.next_step or 0, total)
    if job.status == "succeeded":
        done = total
    parts = [spinner, job.name, job.status + _status_hint(job, datetime.now(UTC))]
    if job.attempts:
        budget = (job.max_retries or 0) + 1
        parts.append(
            f"attempt {job.attempts}/{budget}"
            if job.attempts <= budget
            else f"attempt {job.attempts}"
        )
    if job.status == "running" and job.steps and done < total:
        parts.append(f"step {done + 1}/{total} {job.steps[done].get('type', '?')}")
    parts.append(f"{progress_bar(done, total, unicode=unicode)} {done}/{total}")
    parts.append(_duration(elapsed))
    return "  ".join(p for p in parts if p)
