"""Run the Procfile's processes under supervisord, restarting any that dies (``make run``).

honcho, which ran them before, stops every process as soon as one exits: a worker killed by the
OOM killer took the web server, the dispatcher, beat and Flower down with it. supervisord (the
``supervisor`` package) restarts a process that exits, whatever its exit, and logs it; Ctrl-C
(SIGINT) or SIGTERM to it stops every process, each with its stop signal and a grace period
(Celery's warm shutdown), then the whole process group with SIGKILL (Celery's pool, gunicorn's
workers).

The Procfile stays the list of processes: each line becomes a ``[program:x]`` of a generated
configuration, run as ``/bin/sh -c 'exec <line>'`` so the line's ``${VAR:-default}`` are expanded
and the program's pid is the process itself (the one a signal or the OOM killer hits). Output goes
to the console with each line prefixed by the process's name, through an event listener
(``python -m jobplatform.supervise --prefix``), as honcho printed it.

    python -m jobplatform.supervise [Procfile]        # the run directory is $RUN_DIR (or .run)
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import TextIO

# Seconds a process has to stop after its stop signal before its whole group is killed.
STOP_GRACE = int(os.environ.get("JOBPLATFORM_STOP_GRACE", "20"))


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """``(name, command)`` of each ``name: command`` line, in order."""
    processes = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        if match is None:
            raise SystemExit(f"{path}: not a 'name: command' line: {line!r}")
        processes.append((match[1], match[2]))
    return processes


def _ini(value: str) -> str:
    """A value for supervisord's configuration, which expands ``%(...)s``: ``%`` doubled."""
    return value.replace("%", "%%")


def config(processes: list[tuple[str, str]], run_dir: Path, *, grace: int = STOP_GRACE) -> str:
    """supervisord's configuration for ``processes``, in the foreground, logging to the console."""
    width = max(len(name) for name, _ in processes)
    python = shlex.quote(sys.executable)
    # As root (CI, a container) supervisord would warn that it keeps root's privileges.
    user = "\nuser = root" if os.geteuid() == 0 else ""
    sections = [
        f"""[supervisord]
nodaemon = true
; In the foreground supervisord logs to the console itself (spawned, exited, ...): no file.
logfile = /dev/null
logfile_maxbytes = 0
loglevel = info{user}
pidfile = {_ini(str(run_dir / "supervisord.pid"))}
childlogdir = {_ini(str(run_dir))}

[eventlistener:console]
; Prints every program's output on supervisord's console, each line prefixed by its name.
command = {_ini(python)} -m jobplatform.supervise --prefix {width}
events = PROCESS_LOG
buffer_size = 10000
; Started first and stopped last, so the last lines of every program are printed.
priority = 1
autorestart = true
stderr_logfile = /dev/stdout
stderr_logfile_maxbytes = 0
"""
    ]
    for name, command in processes:
        sections.append(
            f"""[program:{name}]
command = /bin/sh -c {_ini(shlex.quote("exec " + command))}
autostart = true
; Restarted whatever its exit; a program that keeps dying is retried with a growing delay.
autorestart = true
startsecs = 1
startretries = 1000
stopsignal = TERM
stopwaitsecs = {grace}
; The stop signal, then SIGKILL, go to the process group: Celery's pool, gunicorn's workers.
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = NONE
stdout_events_enabled = true
"""
        )
    # One group: a stop (Ctrl-C) stops its programs together, not one after another.
    names = ",".join(name for name, _ in processes)
    sections.append(f"[group:jobplatform]\nprograms = {names}\n")
    return "\n".join(sections)


def prefix_output(width: int, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """The event listener: print each PROCESS_LOG event's lines as ``name | line`` on stderr.

    The listener protocol (supervisor.childutils): READY on stdout, a header line and a payload
    from stdin, RESULT on stdout. stderr goes to supervisord's console.
    """
    from supervisor import childutils  # type: ignore[import-untyped]

    # SIGINT from a terminal reaches supervisord, which stops the listener last: keep printing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    partial: dict[str, str] = {}
    while True:
        _headers, payload = childutils.listener.wait(stdin, stdout)
        meta, _, data = payload.partition("\n")
        name = dict(field.split(":", 1) for field in meta.split()).get("processname", "?")
        lines = (partial.pop(name, "") + data).split("\n")
        partial[name] = lines.pop()  # an unfinished line waits for the rest
        for line in lines:
            sys.stderr.write(f"{name:<{width}} | {line}\n")
        sys.stderr.flush()
        childutils.listener.ok(stdout)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--prefix"]:
        prefix_output(int(argv[1]))
        return
    procfile = Path(argv[0] if argv else "Procfile")
    run_dir = Path(os.environ.get("RUN_DIR") or ".run").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "supervisord.conf"
    conf.write_text(config(read_procfile(procfile), run_dir))
    argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    os.execvp(argv[0], argv)  # noqa: S606 - supervisord takes this process over, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
