"""gunicorn's settings wherever the web process runs (Procfile, Dockerfile, compose, benchmark):
gunicorn reads ./gunicorn.conf.py by default; command-line flags override it."""

from __future__ import annotations

import os

from jobplatform.logs import logging_config

# Processes: about one per core.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads per process (gunicorn's gthread worker): while one request waits on PostgreSQL another
# runs, and clients keep their connections alive instead of reconnecting for every request.
# Measured in docs/performance.md: single submissions ~1.2x sync workers. Each thread keeps its
# own database connection (DJANGO_CONN_MAX_AGE).
threads = int(os.environ.get("WEB_THREADS", "2"))
worker_class = "gthread"
# Request-head limits (docs/security.md#input-limits): a request line (path and query string) of
# at most 8 KiB, at most 100 header fields of at most 8 KiB each; gunicorn answers 400 beyond.
# Bodies are capped by Django (JOBPLATFORM_MAX_REQUEST_BYTES), where the API can say why.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# gunicorn's own lines as the application's (JSON or console, jobplatform/logs.py). Requests are
# logged by the application (jobplatform.tracing), with their trace id: no access log.
logconfig_dict = logging_config(
    fmt=os.environ.get("JOBPLATFORM_LOG_FORMAT", "json"),
    level=os.environ.get("DJANGO_LOG_LEVEL", "INFO"),
    role="web",
)
