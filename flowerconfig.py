"""Flower's configuration, read by `celery -A jobplatform flower --conf=flowerconfig.py`.

Flower never runs open: its HTTP basic authentication comes from JOBPLATFORM_FLOWER_AUTH, or the
file named by JOBPLATFORM_FLOWER_AUTH_FILE (a Docker secret), as ``user:password`` (several pairs
separated by commas), and Flower refuses to start without it. (Not FLOWER_BASIC_AUTH_FILE:
Flower reads every FLOWER_* variable as one of its options and stops at an unknown one.)
"""

from __future__ import annotations

from jobplatform.secrets import SecretError, env_secret

try:
    _credentials = env_secret("JOBPLATFORM_FLOWER_AUTH")
except SecretError as exc:
    raise SystemExit(f"Flower needs credentials: {exc} (user:password)") from None
if ":" not in _credentials:
    raise SystemExit("JOBPLATFORM_FLOWER_AUTH must be user:password")

basic_auth = [pair.strip() for pair in _credentials.split(",") if pair.strip()]
