"""Test settings: the real settings, plus a custom step module and a loopback-friendly http step."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from jobplatform import brokers
from jobplatform.settings import *  # noqa: F403
from jobplatform.settings import env

JOBPLATFORM_STEP_MODULES = ["tests.custom_steps"]
# The tests' HTTP server listens on 127.0.0.1, which production refuses by default.
JOBPLATFORM_HTTP_ALLOW = ["127.0.0.1"]
# Jobs may carry a callback_url (tests/jobs/test_callbacks.py): it needs a signing key.
JOBPLATFORM_CALLBACK_SECRET = env("JOBPLATFORM_CALLBACK_SECRET", default="test-callback-secret")
# "dispatch-probe" has no worker: the dispatcher tests read what was published to it from Redis.
# "flow" and "flow-b": served by the flow-control tests' own worker and dispatcher
# (tests/jobs/test_flow_control.py). "io": the threads pool's (tests/executions/test_io_pool.py).
# "rabbitmq" and "pgbouncer" are the queues of the platforms
# of tests/rabbitmq and tests/pgbouncer.
JOBPLATFORM_QUEUES = [
    "default", "dispatch-probe", "chaos", "flow", "flow-b", "io", "rabbitmq", "pgbouncer",
]  # fmt: skip


def _test_redis_db(url: str) -> str:
    """``url`` on database TEST_REDIS_DB, so that a dev platform on the same Redis is not
    disturbed."""
    return urlunsplit(urlsplit(url)._replace(path="/" + env("TEST_REDIS_DB", default="9")))


# The tests' Redis: the broker by default, and the throttles' cache.
_test_redis_url = env("TEST_REDIS_URL", default="") or _test_redis_db(REDIS_URL)  # noqa: F405


def _test_broker_url() -> str:
    """TEST_BROKER_URL (a RabbitMQ of a test), TEST_REDIS_URL, or the broker on database
    TEST_REDIS_DB when it is a Redis."""
    url = env("TEST_BROKER_URL", default="") or env("TEST_REDIS_URL", default="")
    if url:
        return url
    if brokers.broker_kind(CELERY_BROKER_URL) == "redis":
        return _test_redis_db(CELERY_BROKER_URL)
    return CELERY_BROKER_URL


_broker = brokers.BrokerSettings.for_url(
    _test_broker_url(),
    queues=list(dict.fromkeys([*JOBPLATFORM_QUEUES, JOBPLATFORM_WEBHOOK_QUEUE])),  # noqa: F405
    visibility_timeout=JOBPLATFORM_VISIBILITY_TIMEOUT,  # noqa: F405
    rabbitmq_queue_type=RABBITMQ_QUEUE_TYPE,  # noqa: F405
)
CELERY_BROKER_URL = _broker.url
CELERY_BROKER_TRANSPORT = _broker.transport
CELERY_BROKER_TRANSPORT_OPTIONS = _broker.transport_options
CELERY_TASK_QUEUES = _broker.queues
CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = _broker.missing_queue_type
CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = _broker.missing_queue_exchange_type
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Static files are collected by `make run`, not by the tests (WhiteNoise warns of a missing root).
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]  # noqa: F405
# Every API response is checked against the OpenAPI document (tests/openapi.py): first, so that
# it sees the responses of the other middleware too.
MIDDLEWARE = ["tests.openapi.ValidateResponses", *MIDDLEWARE]
# Two test runs on one machine (two work trees, say) each need their own database and broker DB.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default="test_jobplatform")}  # noqa: F405

# Reliability timings shrunk so that tests observe recovery in seconds, not minutes.
JOBPLATFORM_HEARTBEAT_INTERVAL = 0.2
JOBPLATFORM_LOST_AFTER = 2.0
JOBPLATFORM_REAPER_INTERVAL = 0.5
# An outbox message whose publish after commit never happened goes out a second later.
JOBPLATFORM_OUTBOX_REPUBLISH_AFTER = 1.0
# The chaos suite's broker cases run their processes with production's (TEST_REDELIVER_AFTER=300):
# the broker watch (Redis), or no lost message at all (RabbitMQ), must bring the jobs back.
JOBPLATFORM_REDELIVER_AFTER = env.float("TEST_REDELIVER_AFTER", default=4.0)
JOBPLATFORM_LIVENESS_INTERVAL = 0.5
# What the tests' scrapes of /metrics send as their bearer token.
JOBPLATFORM_METRICS_TOKEN = "metrics-token-of-the-tests"

# The throttles' cache on the tests' Redis database (whatever the broker). Throttling is off
# except where a test turns it on (tests/jobplatform/test_throttling.py): the suite sends
# requests faster than any client.
CACHES = {"default": {**CACHES["default"], "LOCATION": _test_redis_url}}  # noqa: F405
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "api_key": None},
}
# The session dispatcher's retention chore runs often enough for a test to see it act.
JOBPLATFORM_RETENTION_INTERVAL = 0.5
