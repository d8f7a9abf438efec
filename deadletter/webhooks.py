"""The dead-letter webhook: what is sent, how it is signed, and which failures are worth a retry.

The receiver verifies ``X-Jobplatform-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body
under the shared secret, and may deduplicate on ``X-Jobplatform-Delivery`` (the dead letter's id):
delivery is at least once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobplatform import webhooks
from jobplatform.webhooks import (
    SIGNATURE_HEADER,
    WebhookDeliveryError,
    WebhookRejected,
    encode,
    sign,
)

if TYPE_CHECKING:
    from deadletter.models import DeadLetter

EVENT = "dead_letter.created"
__all__ = [
    "EVENT",
    "SIGNATURE_HEADER",
    "WebhookDeliveryError",
    "WebhookRejected",
    "deliver",
    "encode",
    "payload",
    "sign",
]


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


def deliver(*, url: str, secret: str, delivery_id: str, body: dict[str, Any]) -> None:
    """POST ``body``, signed. Returns on 2xx; raises WebhookDeliveryError or WebhookRejected."""
    # The operator configured this URL: unlike the http step it may be a private address.
    webhooks.deliver(
        url=url,
        secret=secret,
        event=EVENT,
        delivery_id=delivery_id,
        body=body,
        user_agent="jobplatform-deadletter-webhook",
    )
