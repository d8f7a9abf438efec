from __future__ import annotations

import socket
import sys
from typing import Any

from django.core.management.base import BaseCommand

from jobplatform.health import readiness
from jobplatform.liveness import process_list
from jobplatform.models import ProcessRole


class Command(BaseCommand):
    help = (
        "Exit 0 if healthy, 1 if not (docker-compose health checks). With --role: a process of "
        "that role on this host beat recently (--anywhere: on any host). Without: the database, "
        "the broker and the migrations are ready, as /readyz."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--role", choices=ProcessRole.values, default=None)
        parser.add_argument(
            "--anywhere", action="store_true", help="a live process of the role on any host"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["role"]
        if role is None:
            ready, checks = readiness()
            self.stdout.write(" ".join(f"{name}={value}" for name, value in checks.items()))
            sys.exit(0 if ready else 1)
        hostname = None if options["anywhere"] else socket.gethostname()
        processes = process_list(role=role, hostname=hostname)
        alive = [p for p in processes if p.alive]
        where = "anywhere" if hostname is None else f"on {hostname}"
        if alive:
            names = ", ".join(f"{p.name} ({p.age:.0f}s ago)" for p in alive)
            self.stdout.write(f"{role} alive {where}: {names}")
            sys.exit(0)
        last = max(processes, key=lambda p: p.beat_at, default=None)
        seen = f"; last beat {last.age:.0f}s ago ({last.name})" if last else ""
        self.stdout.write(f"no live {role} {where}{seen}")
        sys.exit(1)
