"""The Celery application. Configuration is read from Django settings (CELERY_* names)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from jobplatform import brokers, log_redaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery configures the worker's logging itself: the same credential filter as the web's."""
    log_redaction.install(logger)


@worker_init.connect
def _declare_queues(**kwargs: Any) -> None:
    """On RabbitMQ, every platform queue exists before the worker binds them to the delay
    exchanges (jobplatform.brokers.declare_queues)."""
    brokers.declare_queues(app)
