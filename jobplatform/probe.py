"""Health checks of the image, docker-compose.yml and deploy/k8s that load no Django.

``python -m jobplatform.probe URL``
    exit 0 if URL answers 2xx within the timeout, else 1: web's ``/api/v1/health/`` (database
    and broker), Flower's ``/healthcheck``. The slim image has no curl.
``python -m jobplatform.probe --process TEXT``
    exit 0 if a process of this container whose command line contains TEXT is running (not a
    zombie, not stopped), else 1: the dispatcher's and beat's liveness until they beat a liveness
    row of their own (docs/deploy.md#health-checks).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 5.0  # seconds; below the health checks' own timeout
PROC = Path("/proc")


def probe(url: str, *, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether ``url`` answered 2xx, and what to print."""
    if not url.startswith(("http://", "https://")):
        return False, f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked above)
            return 200 <= response.status < 300, f"{response.status} {url}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {url}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def probe_process(text: str, *, proc: Path = PROC) -> tuple[bool, str]:
    """Whether a running process (other than this one) has ``text`` in its command line."""
    own = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            # The state follows the parenthesised name, which may itself hold ") ".
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # ended while we looked
        if text in command and state not in ("Z", "T", "X"):
            return True, f"running: {entry.name} {command.strip()}"
    return False, f"no running process with {text!r} in its command line"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--process" and argv[1]:
        ok, message = probe_process(argv[1])
    elif len(argv) == 1 and not argv[0].startswith("-"):
        ok, message = probe(argv[0])
    else:
        print("usage: python -m jobplatform.probe URL | --process TEXT", file=sys.stderr)
        return 2
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
