from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from executions.reaper import execution_reap_lost
from executions.retention import RetentionPolicy, job_purge_finished
from jobplatform import metrics
from jobplatform.liveness import ProcessIdentity, process_beat, process_forget_silent
from jobs.dispatcher import Chore, Dispatcher

logger = logging.getLogger("jobplatform.dispatcher")


class Command(BaseCommand):
    help = (
        "Release due jobs from PostgreSQL into the broker, fire the schedules whose tick has "
        "come, publish again jobs whose message was lost, reap attempts whose worker died and "
        "delete old finished jobs; until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--poll", type=float, default=None, help="max seconds between scans")
        parser.add_argument(
            "--queues", default="", help="comma-separated queues to serve (default: every queue)"
        )
        parser.add_argument(
            "--without-schedules",
            action="store_true",
            help="do not fire schedules (another dispatcher does; by default every one does)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        queues = [q for q in options["queues"].split(",") if q] or None
        # The reaper lives in `executions`, which `jobs` must not import: it is composed here.
        reaper = Chore(
            "reap-lost",
            settings.JOBPLATFORM_REAPER_INTERVAL,
            lambda: execution_reap_lost(lost_after=settings.JOBPLATFORM_LOST_AFTER, queues=queues),
        )
        # Retention too: it deletes from every app's tables (executions/retention.py).
        retention = Chore(
            "retention",
            settings.JOBPLATFORM_RETENTION_INTERVAL,
            lambda: job_purge_finished(
                policy=RetentionPolicy.from_settings(),
                batch_size=settings.JOBPLATFORM_RETENTION_BATCH,
                budget=settings.JOBPLATFORM_RETENTION_BUDGET,
                queues=queues,
            ),
        )
        # Beating from the loop: a dispatcher whose loop is stuck stops looking alive.
        me = ProcessIdentity.here("dispatcher", details=json.dumps({"queues": queues or ["*"]}))
        liveness = Chore(
            "liveness", settings.JOBPLATFORM_LIVENESS_INTERVAL, lambda: process_beat(process=me)
        )
        forget = Chore("forget-silent-processes", 3600, process_forget_silent)
        dispatcher = Dispatcher(
            batch_size=options["batch_size"],
            poll=options["poll"],
            chores=[reaper, retention, liveness, forget],
            queues=queues,
            schedules=not options["without_schedules"],
        )
        if settings.JOBPLATFORM_METRICS_PORT:
            metrics.serve(
                port=settings.JOBPLATFORM_METRICS_PORT, addr=settings.JOBPLATFORM_METRICS_ADDR
            )
        logger.info(
            "dispatcher started (queues %s, batch %d, poll %.1fs, schedules %s)",
            ",".join(queues or ["*"]),
            dispatcher.batch_size,
            dispatcher.poll,
            "off" if options["without_schedules"] else "on",
        )
        dispatcher.run(stop)
        logger.info("dispatcher stopped")
