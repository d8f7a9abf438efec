from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from executions.retention import RetentionPolicy, job_purge_finished


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than the retention (JOBPLATFORM_JOB_RETENTION_DAYS, per queue "
        "JOBPLATFORM_JOB_RETENTION_BY_QUEUE) with their attempts, steps and closed dead letters "
        "(the audit trail is kept), as the dispatcher's retention chore does; --loop keeps at it "
        "until SIGTERM."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=float, default=None, help="override the default days")
        parser.add_argument("--batch", type=int, default=settings.JOBPLATFORM_RETENTION_BATCH)
        parser.add_argument("--loop", action="store_true", help="purge until SIGTERM or Ctrl-C")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        policy = RetentionPolicy(
            days=settings.JOBPLATFORM_JOB_RETENTION_DAYS if days is None else days,
            by_queue=settings.JOBPLATFORM_JOB_RETENTION_BY_QUEUE,
        )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        total = 0
        while True:
            # A short budget per pass, so a stop request is honoured within about a second.
            done = job_purge_finished(policy=policy, batch_size=options["batch"], budget=1.0)
            total += done
            if not options["loop"] and done < options["batch"]:
                break
            if stop.wait(0 if done else 1.0):
                break
        self.stdout.write(f"deleted {total} finished jobs")
