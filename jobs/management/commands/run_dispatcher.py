from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from jobs.dispatcher import Dispatcher

logger = logging.getLogger("jobplatform.dispatcher")


class Command(BaseCommand):
    help = "Release due jobs from PostgreSQL into the broker until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--poll", type=float, default=None, help="max seconds between scans")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        dispatcher = Dispatcher(batch_size=options["batch_size"], poll=options["poll"])
        logger.info(
            "dispatcher started (batch %d, poll %.1fs)", dispatcher.batch_size, dispatcher.poll
        )
        dispatcher.run(stop)
        logger.info("dispatcher stopped")
