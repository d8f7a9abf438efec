"""The dead-letter webhook: what is sent, how it is signed, and which failures are worth a retry.

The receiver verifies ``X-Jobplatform-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body
under the shared secret, and may deduplicate on ``X-Jobplatform-Delivery`` (the dead letter's id):
delivery is at least once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from deadletter.models import DeadLetter

EVENT = "dead_letter.created"
SIGNATURE_HEADER = "X-Jobplatform-Signature"
TIMEOUT_SECONDS = 10.0


class WebhookDeliveryError(Exception):
    """The receiver could not take the notification now (network error, 5xx, 408, 429): retry."""


class WebhookRejected(Exception):
    """The receiver refused the notification (another 4xx): a retry would be refused too."""


def payload(dead: DeadLetter) -> dict[str, Any]:
    """The notification: enough to triage without calling the API; no traceback, no input."""
    job = dead.job
    return {
        "event": EVENT,
        "dead_letter": {
            "id": dead.id,
            "reason": dead.reason,
            "attempts": dead.attempts,
            "worker": dead.worker,
            "fingerprint": dead.fingerprint,
            "created_at": dead.created_at.isoformat(),
            "error": {
                "type": dead.error_type,
                "code": dead.error_code,
                "message": dead.error_message,
                "step_index": dead.step_index,
                "step_type": dead.step_type,
            },
        },
        "job": {
            "id": str(job.id),
            "name": job.name,
            "queue": job.queue,
            "owner": job.owner.get_username(),
            "trace_id": job.trace_id,
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(raw_body: bytes, secret: str) -> str:
    """The signature header's value for ``raw_body``."""
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def deliver(*, url: str, secret: str, delivery_id: str, body: dict[str, Any]) -> None:
    """POST ``body``, signed. Returns on 2xx; raises WebhookDeliveryError or WebhookRejected."""
    raw = encode(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "jobplatform-deadletter-webhook",
        "X-Jobplatform-Event": EVENT,
        "X-Jobplatform-Delivery": delivery_id,
        SIGNATURE_HEADER: sign(raw, secret),
    }
    try:
        # The operator configured this URL: unlike the http step it may be a private address.
        response = httpx.post(url, content=raw, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.TransportError as exc:
        raise WebhookDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    if status >= 500 or status in (408, 429):
        raise WebhookDeliveryError(f"the receiver answered {status}")
    raise WebhookRejected(f"the receiver answered {status}")
