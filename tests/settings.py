"""Test settings: the real settings, plus a custom step module and a loopback-friendly http step."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from jobplatform.settings import *  # noqa: F403
from jobplatform.settings import env

JOBPLATFORM_STEP_MODULES = ["tests.custom_steps"]
# The tests' HTTP server listens on 127.0.0.1, which production refuses by default.
JOBPLATFORM_HTTP_ALLOW = ["127.0.0.1"]
# "dispatch-probe" has no worker: the dispatcher tests read what was published to it from Redis.
# "flow" and "flow-b": served by the flow-control tests' own worker and dispatcher
# (tests/jobs/test_flow_control.py).
JOBPLATFORM_QUEUES = ["default", "dispatch-probe", "chaos", "flow", "flow-b"]

# Tests use their own Redis database so a dev platform on the same server is not disturbed.
_redis = urlsplit(REDIS_URL)  # noqa: F405
CELERY_BROKER_URL = env(
    "TEST_REDIS_URL",
    default=urlunsplit(_redis._replace(path="/" + env("TEST_REDIS_DB", default="9"))),
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Static files are collected by `make run`, not by the tests (WhiteNoise warns of a missing root).
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]  # noqa: F405
# Two test runs on one machine (two work trees, say) each need their own database and broker DB.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default="test_jobplatform")}  # noqa: F405

# Reliability timings shrunk so that tests observe recovery in seconds, not minutes.
JOBPLATFORM_HEARTBEAT_INTERVAL = 0.2
JOBPLATFORM_LOST_AFTER = 2.0
JOBPLATFORM_REAPER_INTERVAL = 0.5
JOBPLATFORM_REDELIVER_AFTER = 4.0

# The throttles' cache on the tests' Redis database. Throttling is off except where a test turns
# it on (tests/jobplatform/test_throttling.py): the suite sends requests faster than any client.
CACHES = {"default": {**CACHES["default"], "LOCATION": CELERY_BROKER_URL}}  # noqa: F405
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "api_key": None},
}
