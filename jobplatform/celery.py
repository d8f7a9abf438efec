"""The Celery application. Configuration is read from Django settings (CELERY_* names).

Signals wire the worker and beat into the platform's logs, metrics and liveness rows.
"""

from __future__ import annotations

import json
import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
)

from jobplatform import brokers, logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery leaves logging to us: the settings' LOGGING (JSON lines or console, credentials
    redacted: jobplatform/logs.py) at the command line's ``--loglevel``. With this receiver
    Celery configures no handler of its own (nor sends after_setup_logger)."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@task_prerun.connect
def _bind_task(task_id: str, task: Any, args: Any = None, **_: Any) -> None:
    # Lines of the task (Celery's "succeeded" line included) carry its task, trace and job ids.
    logs.bind_task(task.request, task.name, args)


@task_postrun.connect
def _clear_task(**_: Any) -> None:
    logs.clear()


@worker_ready.connect
def _worker_ready(sender: Any, **_: Any) -> None:
    """In the worker's main process: liveness row, and metrics on a port of its own if asked."""
    from django.conf import settings

    from jobplatform import liveness, metrics

    details = json.dumps(
        {
            "queues": sorted(q.name for q in sender.task_consumer.queues),
            "concurrency": getattr(sender.controller, "concurrency", None),
        }
    )
    liveness.BeatThread(
        liveness.ProcessIdentity.here("worker", name=sender.hostname, details=details)
    ).start()
    if settings.JOBPLATFORM_METRICS_PORT:
        metrics.serve(
            port=settings.JOBPLATFORM_METRICS_PORT, addr=settings.JOBPLATFORM_METRICS_ADDR
        )


@beat_init.connect
def _beat_init(**_: Any) -> None:
    from jobplatform import liveness

    liveness.BeatThread(liveness.ProcessIdentity.here("beat")).start()


@worker_init.connect
def _declare_queues(**kwargs: Any) -> None:
    """On RabbitMQ, every platform queue exists before the worker binds them to the delay
    exchanges (jobplatform.brokers.declare_queues)."""
    brokers.declare_queues(app)
