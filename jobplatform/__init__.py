from __future__ import annotations

import os

# An empty PROMETHEUS_MULTIPROC_DIR would switch prometheus-client (which reads it at import) to
# multiprocess mode with the current directory as the directory: empty means unset.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

from .celery import app as celery_app

__all__ = ("celery_app",)
