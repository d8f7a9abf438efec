"""The Celery application. Configuration is read from Django settings (CELERY_* names)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from jobplatform import log_redaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery configures the worker's logging itself: the same credential filter as the web's."""
    log_redaction.install(logger)
