"""gunicorn's settings wherever the web process runs (Procfile, Dockerfile, compose, benchmark):
gunicorn reads ./gunicorn.conf.py by default; command-line flags override it."""

from __future__ import annotations

import os

# Processes: about one per core.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads per process (gunicorn's gthread worker): while one request waits on PostgreSQL another
# runs, and clients keep their connections alive instead of reconnecting for every request.
# Measured in docs/performance.md: single submissions ~1.2x sync workers. Each thread keeps its
# own database connection (DJANGO_CONN_MAX_AGE).
threads = int(os.environ.get("WEB_THREADS", "2"))
worker_class = "gthread"
