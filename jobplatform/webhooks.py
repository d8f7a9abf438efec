"""Signed JSON notifications: how they are encoded and signed, and which failures are worth a retry.

Shared by the dead-letter webhook (``deadletter.webhooks``) and the completion callbacks
(``jobs.callbacks``). The receiver verifies ``X-Jobplatform-Signature: sha256=<hex>``, the
HMAC-SHA256 of the raw body under the shared secret, and may deduplicate on
``X-Jobplatform-Delivery``: delivery is at least once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Jobplatform-Signature"
TIMEOUT_SECONDS = 10.0

# POST (url, raw body, headers) -> response: plain httpx for a URL the operator configured, the
# http step's guarded client for a client's URL (jobs.callbacks).
Post = Callable[[str, bytes, dict[str, str]], httpx.Response]


class WebhookDeliveryError(Exception):
    """The receiver could not take the notification now (network error, 5xx, 408, 429): retry."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class WebhookRejected(Exception):
    """The receiver refused the notification (another 4xx): a retry would be refused too."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


# A delivery task's Celery options: bounded, 8 retries, 2 s doubling up to 10 min with full
# jitter (about 25 min in all), off the path of whoever published it. acks_late: a worker lost
# mid-delivery leaves the message to be redelivered (at least once).
RETRY_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (WebhookDeliveryError,),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


# The delivery tasks (jobs.callbacks.services.DELIVER_TASK, deadletter.services.NOTIFY_TASK):
# named here, since jobplatform imports neither app.
WEBHOOK_TASKS = frozenset({"jobs.deliver_callback", "deadletter.notify_webhook"})


def route(name: str, *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """Celery's router (CELERY_TASK_ROUTES): a delivery task goes to JOBPLATFORM_WEBHOOK_QUEUE,
    a queue of its own, however it is published (after its commit, or again by the outbox's
    flush), so a slow receiver holds the workers of that queue, not the job queues'. Read at
    each publish. A retry keeps the queue its message came from (Celery's retry reuses the
    message's routing, which an explicit queue wins over a router's)."""
    if name not in WEBHOOK_TASKS:
        return None
    from django.conf import settings

    return {"queue": settings.JOBPLATFORM_WEBHOOK_QUEUE}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(raw_body: bytes, secret: str) -> str:
    """The signature header's value for ``raw_body``."""
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def plain_post(url: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=raw, headers=headers, timeout=TIMEOUT_SECONDS)


def deliver(
    *,
    url: str,
    secret: str,
    event: str,
    delivery_id: str,
    body: dict[str, Any],
    user_agent: str,
    post: Post = plain_post,
) -> int:
    """POST ``body``, signed; the status code on 2xx. Raises WebhookDeliveryError (retry) or
    WebhookRejected (do not)."""
    raw = encode(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-Jobplatform-Event": event,
        "X-Jobplatform-Delivery": delivery_id,
        SIGNATURE_HEADER: sign(raw, secret),
    }
    try:
        response = post(url, raw, headers)
    except httpx.TransportError as exc:
        raise WebhookDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status >= 500 or status in (408, 429):
        raise WebhookDeliveryError(f"the receiver answered {status}", status)
    raise WebhookRejected(f"the receiver answered {status}", status)
