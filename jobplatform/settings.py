"""Django settings: every value comes from the environment (see .env.example)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ

from jobplatform import brokers, logs
from jobplatform.secrets import env_secret, url_with_password

# ModelAdmin and other Django generics become subscriptable (admin.ModelAdmin[Job]) for mypy's
# django-stubs; nothing else changes.
django_stubs_ext.monkeypatch(include_builtins=False)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Secrets (docs/security.md#secrets): each from NAME or from the file named by NAME_FILE (Docker
# secrets), never a literal.
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")  # required: no default
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    # First: its templates extend the admin's index and job list with the operator's summary.
    "console",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    # Its APIKey model is unused (jobplatform.ApiKey extends its abstract model), but the app
    # must be installed for the module that defines both to be imported.
    "rest_framework_api_key",
    "django_filters",
    "django_celery_beat",
    # The OpenAPI document and its Swagger UI and Redoc pages (docs/api.md), with their static
    # files from the sidecar package (no CDN).
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "jobplatform",
    "jobs",
    "deadletter",
    "executions",
]

MIDDLEWARE = [
    # Probes and scrapes (/healthz, /readyz, /metrics) are answered first: no host check, session
    # or log line for what a load balancer or Prometheus asks every few seconds.
    "jobplatform.health.ProbeMiddleware",
    # The request's trace id on every log line of it, and one line per request.
    "jobplatform.tracing.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a cookie, a header or the query string (docs/security.md).
    "jobplatform.middleware.RejectUnstorableInput",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jobplatform.urls"
WSGI_APPLICATION = "jobplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The password may live in its own secret instead of the URL (then no escaping is needed); it is
# the password of both URLs below.
_database_password = env_secret("DATABASE_PASSWORD", default="")


def _database(url: str) -> dict[str, Any]:
    config: dict[str, Any] = env.db_url_config(url)
    if _database_password:
        config["PASSWORD"] = _database_password
    return config


DATABASES = {"default": _database(env_secret("DATABASE_URL"))}
# Behind a pooler in transaction mode (PgBouncer's pool_mode=transaction, docs/deploy.md) the web
# and worker processes use DATABASE_URL, the pooler; what needs a session of its own, the
# dispatcher's LISTEN, uses this direct connection to PostgreSQL (jobplatform.db.direct_connect).
# None: DATABASE_URL is direct already.
_direct_url = env_secret("DATABASE_DIRECT_URL", default="")
DATABASE_DIRECT = _database(_direct_url) if _direct_url else None
# A server-side cursor (QuerySet.iterator()) lives in one session across statements, which a
# transaction-mode pooler does not keep: off there.
# https://docs.djangoproject.com/en/5.2/ref/databases/#transaction-pooling-server-side-cursors
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = not env.bool(
    "DATABASE_SERVER_SIDE_CURSORS", default=True
)
# Persistent connections for web processes; workers keep theirs via CELERY_DB_REUSE_MAX below.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The hot statements (the worker's claim, step done and success; the dispatcher's releases) are
# server-bound and prepared once per connection (jobplatform.db.prepared_cursor): planning them
# cost PostgreSQL as much as running them. Django's own queries stay client-bound and are never
# prepared. Off (false) behind a pooler that cannot keep prepared statements (PgBouncer before
# 1.21, or without max_prepared_statements, in transaction mode).
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
    5 if env.bool("DATABASE_PREPARED_STATEMENTS", default=True) else None
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The admin's dates to the second, zone named (jobplatform/formats/en/formats.py).
FORMAT_MODULE_PATH = ["jobplatform.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

REST_FRAMEWORK = {
    # docs/security.md: Token (DRF), Api-Key (djangorestframework-api-key), Bearer (simplejwt),
    # and the admin's session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobplatform.api.authentication.TokenAuthentication",
        "jobplatform.api.authentication.ApiKeyAuthentication",
        "jobplatform.api.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Authenticated, then the role's permission for the view and method, then the key's scope.
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "jobplatform.api.permissions.HasRolePermission",
        "jobplatform.api.permissions.ApiKeyScope",
    ],
    # Counted in the cache below (Redis), so every web process shares the counts. A rate is
    # "N/s", "N/min", "N/hour" or "N/day"; an empty value turns that throttle off.
    "DEFAULT_THROTTLE_CLASSES": ["jobplatform.api.throttling.RateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("JOBPLATFORM_THROTTLE_ANON_RATE", default="60/min") or None,
        "user": env("JOBPLATFORM_THROTTLE_USER_RATE", default="3000/min") or None,
        "api_key": env("JOBPLATFORM_THROTTLE_API_KEY_RATE", default="1200/min") or None,
    },
    # Proxies in front of the web processes whose X-Forwarded-For is trusted for the client's
    # address (the anonymous throttle); 0: REMOTE_ADDR, so a client cannot pick its own address.
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The one parser: size, depth, number and character limits (jobplatform/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["jobplatform.api.parsers.LimitedJSONParser"],
    "EXCEPTION_HANDLER": "jobplatform.api.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "jobplatform.api.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # The platform's errors, lists and filters in the OpenAPI document (jobplatform/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "jobplatform.api.schema.AutoSchema",
}

# The OpenAPI document at /api/schema/ (drf-spectacular), Swagger UI at /api/docs/, Redoc at
# /api/redoc/. https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "jobplatform API",
    "DESCRIPTION": (
        "Submit jobs (pipelines of steps), follow their attempts, retry what failed, schedule "
        'recurring work. Every error is `{"error": {"code", "message", "details"}}` '
        "with a namespaced code; each response lists the codes it may carry."
    ),
    "VERSION": "1",
    # 3.1: schemas are JSON Schema 2020-12, so the test suite validates responses with jsonschema.
    "OAS_VERSION": "3.1.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Request and response shapes as separate components (read-only fields only in responses).
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus",
        "WaitingReasonEnum": "jobs.api.schemas.WAITING_REASONS",
        "DeadLetterReasonEnum": "deadletter.models.DeadLetter.Reason",
        "BreakerStateEnum": "jobs.models.CircuitBreaker.State",
        "DeadLetterStateEnum": "deadletter.models.DeadLetter.State",
        "HealthStatusEnum": "jobplatform.api.schemas.HEALTH_STATUSES",
    },
}

# --- Request limits (docs/security.md#input-limits) ----------------------------------------------
# The largest request body, in bytes: the API's JSON parser answers 413 API.BODY_TOO_LARGE beyond
# it, and Django applies it to form posts (the admin). One number, one place.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("JOBPLATFORM_MAX_REQUEST_BYTES", default=5 * 1024 * 1024)
# How deep arrays and objects may nest in a JSON body (400 API.JSON_TOO_DEEP beyond).
JOBPLATFORM_MAX_JSON_DEPTH = env.int("JOBPLATFORM_MAX_JSON_DEPTH", default=64)

# --- HTTPS (docs/security.md#production-settings) ------------------------------------------------
# DJANGO_SECURE=1 when the site is served over HTTPS (directly or behind a TLS proxy): secure
# cookies, HSTS and a redirect from http. `manage.py check --deploy` is then clean
# (tests/jobplatform/test_production_settings.py).
SECURE = env.bool("DJANGO_SECURE", default=False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=SECURE)
# The health check of a load balancer or of compose speaks plain http from inside.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Preloading is a promise about the whole domain made by its owner, not by this application, so it
# is off unless asked; check --deploy's reminder about it (security.W021) is silenced meanwhile.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# JWTs for interactive clients (djangorestframework-simplejwt): a short-lived access token and
# a refresh token. https://django-rest-framework-simplejwt.readthedocs.io/en/latest/settings.html
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env.float("JOBPLATFORM_JWT_ACCESS_MINUTES", default=5)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        hours=env.float("JOBPLATFORM_JWT_REFRESH_HOURS", default=24)
    ),
    # Its own key lets JWTs be revoked all at once (change it) without touching sessions.
    "SIGNING_KEY": env("JOBPLATFORM_JWT_SIGNING_KEY", default=SECRET_KEY),
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Tokens carry a hash of the password's hash: a password change revokes them.
    "CHECK_REVOKE_TOKEN": True,
    "UPDATE_LAST_LOGIN": True,
}

# A key's last_used_at is written at most this often (seconds), not on every request.
JOBPLATFORM_API_KEY_LAST_USED_PRECISION = env.float(
    "JOBPLATFORM_API_KEY_LAST_USED_PRECISION", default=60.0
)

# Every process logs JSON lines (json) or, for a person at a terminal, aligned text (console;
# scripts/env.sh sets it for make run), with the job's context: jobplatform/logs.py.
JOBPLATFORM_LOG_FORMAT = env("JOBPLATFORM_LOG_FORMAT", default="json")
LOGGING = logs.logging_config(
    fmt=JOBPLATFORM_LOG_FORMAT, level=env("DJANGO_LOG_LEVEL", default="INFO")
)

# --- Metrics (jobplatform/metrics.py, docs/operations.md#metrics) -------------------------------
# prometheus-client reads PROMETHEUS_MULTIPROC_DIR itself, at import: set, every process writes
# its metrics to files there and /metrics (and a role's own port) adds up every file.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
# A port of its own for the worker's main process or the dispatcher (0: none): where one
# multiprocess directory is not shared with the web server (one per container).
JOBPLATFORM_METRICS_PORT = env.int("JOBPLATFORM_METRICS_PORT", default=0)
JOBPLATFORM_METRICS_ADDR = env("JOBPLATFORM_METRICS_ADDR", default="127.0.0.1")
# When set, /metrics asks for "Authorization: Bearer <token>".
JOBPLATFORM_METRICS_TOKEN = env_secret("JOBPLATFORM_METRICS_TOKEN", default="")

# --- Celery ------------------------------------------------------------------------------------
# Every CELERY_* name is checked by tests/jobplatform/test_celery_config.py: a misspelt name is
# silently ignored by Celery. https://docs.celeryq.dev/en/stable/userguide/configuration.html

JOBPLATFORM_QUEUES = env.list("JOBPLATFORM_QUEUES", default=["default"])
# The Celery queue of the signed notifications: completion callbacks (jobs.deliver_callback) and
# the dead-letter webhook (deadletter.notify_webhook), with their retries. Not a job queue: a
# slow receiver's deliveries, and their retries' countdowns, hold the slots of the workers that
# consume it, not the job queues' (docs/operations.md#scaling-workers-and-queues).
JOBPLATFORM_WEBHOOK_QUEUE = env("JOBPLATFORM_WEBHOOK_QUEUE", default="webhooks")
# Longest job and longest retry backoff a submission may ask for: they bound the visibility timeout.
JOBPLATFORM_MAX_JOB_TIMEOUT = env.int("JOBPLATFORM_MAX_JOB_TIMEOUT", default=3600)
JOBPLATFORM_MAX_RETRY_BACKOFF = env.int("JOBPLATFORM_MAX_RETRY_BACKOFF", default=3600)

# Redis: the broker unless BROKER_URL names another, and Django's cache (the throttles' counts)
# always. Its password may live in its own secret instead of the URL.
REDIS_URL = url_with_password(env_secret("REDIS_URL"), env_secret("REDIS_PASSWORD", default=""))

# The broker (jobplatform/brokers.py, docs/deploy.md#choosing-the-broker): BROKER_URL when set
# (redis:// or amqp:// for RabbitMQ), else REDIS_URL. Each password may live in its own secret.
# (Not CELERY_BROKER_URL: Celery reads that variable itself, over every setting.)
if _broker_url := env_secret("BROKER_URL", default=""):
    _broker_url = url_with_password(_broker_url, env_secret("BROKER_PASSWORD", default=""))
else:
    _broker_url = REDIS_URL
# RabbitMQ only: quorum (replicated, FIFO within a queue) or classic (one node, priorities).
RABBITMQ_QUEUE_TYPE: brokers.QueueType = env("RABBITMQ_QUEUE_TYPE", default="quorum")
# Redis's visibility timeout must outlast the longest job (retries wait in PostgreSQL, not in a
# worker, since #13; the backoff term is kept as margin). A run_jobs batch can be held longer than
# this: its unstarted jobs are then delivered again, which their claim fencing makes harmless.
JOBPLATFORM_VISIBILITY_TIMEOUT = JOBPLATFORM_MAX_JOB_TIMEOUT + JOBPLATFORM_MAX_RETRY_BACKOFF + 300
_broker = brokers.BrokerSettings.for_url(
    _broker_url,
    queues=list(dict.fromkeys([*JOBPLATFORM_QUEUES, JOBPLATFORM_WEBHOOK_QUEUE])),
    visibility_timeout=JOBPLATFORM_VISIBILITY_TIMEOUT,
    rabbitmq_queue_type=RABBITMQ_QUEUE_TYPE,
)
CELERY_BROKER_URL = _broker.url
CELERY_BROKER_TRANSPORT = _broker.transport
# Redis: the visibility timeout and priority lists; RabbitMQ: publisher confirms.
CELERY_BROKER_TRANSPORT_OPTIONS = _broker.transport_options
# RabbitMQ: each queue durable, quorum or classic, on a topic exchange (jobplatform/brokers.py).
CELERY_TASK_QUEUES = _broker.queues
CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = _broker.missing_queue_type
CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = _broker.missing_queue_exchange_type

# The throttles' counts, shared by every web process. Django's own Redis backend on REDIS_URL by
# default (whatever the broker); the key prefix keeps its keys apart from Celery's. Nothing else
# is cached. https://docs.djangoproject.com/en/5.2/topics/cache/#redis
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("JOBPLATFORM_CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": "jobplatform",
    }
}
CELERY_TASK_DEFAULT_QUEUE = JOBPLATFORM_QUEUES[0]
# Callbacks and webhooks to JOBPLATFORM_WEBHOOK_QUEUE (jobplatform/webhooks.py).
CELERY_TASK_ROUTES = ["jobplatform.webhooks.route"]
# A message is acknowledged only after the task returns, and handed back if the worker process dies,
# so a crash never loses a job; duplicate deliveries are made harmless by the claim (DESIGN §2).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that raises is acked like one that returns: run_job raises AttemptFailed so that Flower
# shows a failed attempt as FAILURE; its message must not come back (Celery's default, pinned).
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
# Task events cost the worker's event loop a Redis round trip each (three per task): off by
# default, and switched on at run time by Flower (its --enable-events, on by default) while it
# watches. Measured: events on halved the worker's throughput (docs/performance.md).
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the database connection around every task unless this is set:
# a new PostgreSQL session per task (reported at 2x slower here; see docs/performance.md).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TIMEZONE = "UTC"

# --- jobplatform -------------------------------------------------------------------------------
JOBPLATFORM_STEP_MODULES = env.list("JOBPLATFORM_STEP_MODULES", default=[])
# The http step (docs/security.md#the-http-step) reaches public addresses only, plus these: IP
# addresses or CIDR networks (10.1.0.0/16, fd00::/8) and host names (exact) whose addresses may
# be non-public. JOBPLATFORM_HTTP_ALLOW_PRIVATE=1 allows every address (deprecated: prefer a list).
JOBPLATFORM_HTTP_ALLOW = env.list("JOBPLATFORM_HTTP_ALLOW", default=[])
JOBPLATFORM_HTTP_ALLOW_PRIVATE = env.bool("JOBPLATFORM_HTTP_ALLOW_PRIVATE", default=False)
# Redirects the http step follows (each hop checked as the first request); 0 follows none.
JOBPLATFORM_HTTP_MAX_REDIRECTS = env.int("JOBPLATFORM_HTTP_MAX_REDIRECTS", default=5)
# A PEM file of the CAs the http step trusts (an internal CA); default: certifi's public CAs.
JOBPLATFORM_HTTP_CA_BUNDLE = env("JOBPLATFORM_HTTP_CA_BUNDLE", default="")
# The largest response body the http step reads, in bytes after decompression.
JOBPLATFORM_HTTP_MAX_RESPONSE_BYTES = env.int(
    "JOBPLATFORM_HTTP_MAX_RESPONSE_BYTES", default=1024 * 1024
)
# Circuit breakers per http host (docs/flow-control.md#circuit-breakers): this many transient
# failures of http steps to one host within the window open its breaker (0: never); the host's
# jobs then wait, attempts unspent, until a probe released after the cooldown succeeds.
JOBPLATFORM_BREAKER_FAILURES = env.int("JOBPLATFORM_BREAKER_FAILURES", default=5)
JOBPLATFORM_BREAKER_WINDOW = env.float("JOBPLATFORM_BREAKER_WINDOW", default=60.0)
JOBPLATFORM_BREAKER_COOLDOWN = env.float("JOBPLATFORM_BREAKER_COOLDOWN", default=30.0)
JOBPLATFORM_MAX_STEPS = env.int("JOBPLATFORM_MAX_STEPS", default=50)
JOBPLATFORM_MAX_INPUT_BYTES = env.int("JOBPLATFORM_MAX_INPUT_BYTES", default=65536)
JOBPLATFORM_MAX_RETRIES = env.int("JOBPLATFORM_MAX_RETRIES", default=25)
JOBPLATFORM_MAX_BULK_JOBS = env.int("JOBPLATFORM_MAX_BULK_JOBS", default=1000)
JOBPLATFORM_DISPATCH_BATCH = env.int("JOBPLATFORM_DISPATCH_BATCH", default=500)
JOBPLATFORM_DISPATCH_POLL = env.float("JOBPLATFORM_DISPATCH_POLL", default=5.0)
# Flow control (docs/architecture.md#flow-control). The dispatcher keeps about this many seconds
# of each queue's work waiting in the broker (QUEUED), at the rate it released the queue's jobs
# in the last second, and releases more only as workers take them: a job released now starts
# behind about that much, whatever backlog waits in PostgreSQL, where fair share and priority
# decide. 0: always JOBPLATFORM_DISPATCH_MAX_QUEUED.
JOBPLATFORM_DISPATCH_QUEUED_SECONDS = env.float("JOBPLATFORM_DISPATCH_QUEUED_SECONDS", default=0.25)
# The most jobs of one queue waiting in the broker, whatever the rate. 0: no bound at all (every
# due job is released at once; fair share and priority then only order each batch).
JOBPLATFORM_DISPATCH_MAX_QUEUED = env.int("JOBPLATFORM_DISPATCH_MAX_QUEUED", default=1000)
# Seconds between the dispatcher's passes while due jobs wait for room (a cap, the broker depth,
# a concurrency key): finishing jobs free room without waking it.
JOBPLATFORM_DISPATCH_HELD_POLL = env.float("JOBPLATFORM_DISPATCH_HELD_POLL", default=0.05)
# The in-flight cap (QUEUED + RUNNING) of a queue whose own (API, admin) is not set. 0: no cap.
JOBPLATFORM_QUEUE_MAX_IN_FLIGHT = env.int("JOBPLATFORM_QUEUE_MAX_IN_FLIGHT", default=0)
# Admission control: most unfinished jobs per owner (unless its OwnerQuota says otherwise) and in
# all; a submission beyond either is refused with 429 JOBS.TOO_MANY_UNFINISHED. 0: no cap.
JOBPLATFORM_MAX_UNFINISHED_PER_OWNER = env.int(
    "JOBPLATFORM_MAX_UNFINISHED_PER_OWNER", default=100_000
)
JOBPLATFORM_MAX_UNFINISHED = env.int("JOBPLATFORM_MAX_UNFINISHED", default=1_000_000)
# Seconds a web process trusts its last count of unfinished jobs (adding its own submissions)
# before counting again: counting a backlog per request would cost milliseconds. 0: every time.
JOBPLATFORM_ADMISSION_RECOUNT = env.float("JOBPLATFORM_ADMISSION_RECOUNT", default=1.0)
# The Retry-After of a refused submission, in seconds.
JOBPLATFORM_ADMISSION_RETRY_AFTER = env.int("JOBPLATFORM_ADMISSION_RETRY_AFTER", default=5)
# Several jobs per message under backlog: a release of n due jobs of one queue and priority goes
# out as messages of k = min(BATCH_MAX, (q + n) // BATCH_SPREAD) jobs (at least 1; q: the queue's
# jobs already QUEUED), run in turn by one pool process. Idle, a release holds one job (k = 1,
# latency unchanged). BATCH_MAX=1: off. Under backlog the broker depth holds at least
# BATCH_MAX x BATCH_SPREAD short jobs (jobs.flow.BrokerDepth).
JOBPLATFORM_BATCH_MAX = env.int("JOBPLATFORM_BATCH_MAX", default=16)
JOBPLATFORM_BATCH_SPREAD = env.int("JOBPLATFORM_BATCH_SPREAD", default=4)
# Workers refresh heartbeat_at of running attempts this often; an attempt silent for
# JOBPLATFORM_LOST_AFTER seconds is declared lost by the reaper (in the dispatcher process).
JOBPLATFORM_HEARTBEAT_INTERVAL = env.float("JOBPLATFORM_HEARTBEAT_INTERVAL", default=5.0)
JOBPLATFORM_LOST_AFTER = env.float("JOBPLATFORM_LOST_AFTER", default=60.0)
# Off the main thread (the threads pool) a watchdog enforces step deadlines: a step still running
# this many seconds past its deadline (stuck in a C call) has its attempt ended without it.
JOBPLATFORM_STEP_ABANDON_AFTER = env.float("JOBPLATFORM_STEP_ABANDON_AFTER", default=5.0)
# A QUEUED or RETRYING job whose message has not started it this long after it was due is
# published again (its message was lost: a restarted Redis, a worker killed with a retry in hand).
JOBPLATFORM_REDELIVER_AFTER = env.float("JOBPLATFORM_REDELIVER_AFTER", default=300.0)
JOBPLATFORM_REAPER_INTERVAL = env.float("JOBPLATFORM_REAPER_INTERVAL", default=5.0)
# A message written to the outbox (completion callbacks, the dead-letter webhook) that is still
# unpublished this many seconds later (its process died after the commit, or the broker refused
# it) is published by a dispatcher (jobplatform.outbox).
JOBPLATFORM_OUTBOX_REPUBLISH_AFTER = env.float("JOBPLATFORM_OUTBOX_REPUBLISH_AFTER", default=30.0)
# The dispatcher asks the broker this often whether it restarted or lost its data (Redis run_id,
# uptime, a marker key); if so it publishes again at once every job whose message was on it.
JOBPLATFORM_BROKER_CHECK_INTERVAL = env.float("JOBPLATFORM_BROKER_CHECK_INTERVAL", default=2.0)
# Workers, dispatchers and beat write a liveness row this often; one silent for three intervals
# is not alive (GET /api/v1/health/processes/, manage.py health, the admin).
JOBPLATFORM_LIVENESS_INTERVAL = env.float("JOBPLATFORM_LIVENESS_INTERVAL", default=10.0)
# Schedules (docs/schedules.md). The dispatchers fire them at their next_fire_at; the latest due
# tick is on time if it is at most this many seconds old, and earlier ticks were missed (no
# dispatcher was running, or the database was down): the schedule's misfire policy decides.
JOBPLATFORM_SCHEDULE_MISFIRE_GRACE = env.float("JOBPLATFORM_SCHEDULE_MISFIRE_GRACE", default=60.0)
# Schedules a sweep fires per transaction (each batch is one claim, one job INSERT, one UPDATE).
JOBPLATFORM_SCHEDULE_BATCH = env.int("JOBPLATFORM_SCHEDULE_BATCH", default=1000)
# Database sessions one dispatcher's sweep uses at once when more than a batch is due: with two,
# one batch is decided in Python while another is in PostgreSQL (docs/performance.md).
JOBPLATFORM_SCHEDULE_SESSIONS = env.int("JOBPLATFORM_SCHEDULE_SESSIONS", default=2)
# How long an Idempotency-Key keeps answering with its job; after that it may be reused.
JOBPLATFORM_IDEMPOTENCY_TTL_HOURS = env.float("JOBPLATFORM_IDEMPOTENCY_TTL_HOURS", default=24.0)
# Dead letters: closed (retried or dismissed) entries are purged this many days after they were
# closed, by the beat task deadletter.purge; open entries are never purged automatically.
JOBPLATFORM_DEADLETTER_RETENTION_DAYS = env.int("JOBPLATFORM_DEADLETTER_RETENTION_DAYS", default=30)
# Retention of finished jobs (docs/operations.md#retention-of-finished-jobs): a job that finished
# (succeeded, failed, cancelled) more than this many days ago is deleted with its attempts, step
# results and closed dead letters (the audit trail is kept); 0 keeps jobs forever. Never a job
# with an open dead letter, nor a schedule's latest job. Per queue: "reports=90,bulk=2" (0 there
# keeps that queue's).
JOBPLATFORM_JOB_RETENTION_DAYS = env.float("JOBPLATFORM_JOB_RETENTION_DAYS", default=30.0)
JOBPLATFORM_JOB_RETENTION_BY_QUEUE = {
    queue: float(days)
    for queue, days in env.dict("JOBPLATFORM_JOB_RETENTION_BY_QUEUE", default={}).items()
}
# The dispatcher's retention chore: every INTERVAL seconds it deletes batches of BATCH jobs (one
# short transaction each) until none is left or BUDGET seconds are spent; releases wait meanwhile.
JOBPLATFORM_RETENTION_INTERVAL = env.float("JOBPLATFORM_RETENTION_INTERVAL", default=10.0)
JOBPLATFORM_RETENTION_BATCH = env.int("JOBPLATFORM_RETENTION_BATCH", default=500)
JOBPLATFORM_RETENTION_BUDGET = env.float("JOBPLATFORM_RETENTION_BUDGET", default=0.5)
# When set, every new dead letter is POSTed there as JSON, signed with HMAC-SHA256 of the raw body
# under the secret (header X-Jobplatform-Signature: sha256=<hex>). The secret is then required.
JOBPLATFORM_DEADLETTER_WEBHOOK_URL = env("JOBPLATFORM_DEADLETTER_WEBHOOK_URL", default="")
JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET = env_secret(
    "JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET", default=""
)
# Completion callbacks (docs/api.md#completion-callbacks). A job's callback_url is POSTed to once
# it ends, signed with JOBPLATFORM_CALLBACK_SECRET (the key its owners verify with); without the
# secret, submissions with a callback_url are refused (400 JOBS.CALLBACKS_DISABLED).
JOBPLATFORM_CALLBACK_SECRET = env_secret("JOBPLATFORM_CALLBACK_SECRET", default="")
# The operator's completion webhook: every job's end, signed with its own secret (required when
# the URL is set), which clients never see. May be a private address, as the dead-letter webhook.
JOBPLATFORM_COMPLETION_WEBHOOK_URL = env("JOBPLATFORM_COMPLETION_WEBHOOK_URL", default="")
JOBPLATFORM_COMPLETION_WEBHOOK_SECRET = env_secret(
    "JOBPLATFORM_COMPLETION_WEBHOOK_SECRET", default=""
)
