"""Completion callbacks: checked at submission, published when a job ends, delivered by a task.

- **Submission** (:func:`callback_url_validate`): an http(s) URL whose host is not a literal
  private address (the http step's policy, ``JOBPLATFORM_HTTP_ALLOW``), and a signing key set.
- **Signing** (:func:`callback_key`): each owner's callbacks are signed with a key of the
  owner's own, derived from ``JOBPLATFORM_CALLBACK_SECRET``; the operator's webhook with its own.
- **The end** (:func:`callbacks_publish`): the service whose conditional UPDATE ended the job
  (succeed, fail, cancel) calls it, in that UPDATE's transaction, when its row count says it
  did. One message per target, each with a new delivery id, is written to the outbox there and
  published after the commit (``jobplatform.outbox``: a process that dies in between leaves the
  row, which a dispatcher publishes): a repeated terminal event (a second worker, a redelivered
  message, a second cancel) matches no row, so it publishes nothing.
- **Delivery** (:func:`callback_deliver`, run by the task ``jobs.deliver_callback``): each HTTP
  attempt is a row, written before the POST and completed after it. The task retries with
  capped exponential backoff and jitter, off the worker's path; 2xx ends it, a 4xx or a refused
  address is not retried. At least once: a receiver deduplicates on ``X-Jobplatform-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from typing import Any
from uuid import UUID, uuid4

import httpx
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from jobplatform import webhooks
from jobplatform.errors import InvalidInput
from jobplatform.outbox import outbox_publish
from jobs.callbacks.models import CallbackDelivery
from jobs.models import Job
from jobs.steps.errors import PermanentStepError, TransientStepError
from jobs.steps.http import (
    BACKEND,
    checked_address,
    http_client,
    policy_from_settings,
    redact_url,
)

logger = logging.getLogger("jobplatform.callbacks")

DELIVER_TASK = "jobs.deliver_callback"
KEY_CONTEXT = "jobplatform/callback-key/v1/"  # what an owner's key is derived for
MAX_URL_LENGTH = 2048
Event = CallbackDelivery.Event
Target = CallbackDelivery.Target
State = CallbackDelivery.State


def callback_url_validate(url: str) -> None:
    """Raise InvalidInput unless ``url`` may be a job's callback_url.

    JOBS.INVALID_CALLBACK_URL: not an absolute http(s) URL of at most 2048 characters.
    JOBS.CALLBACK_URL_REFUSED: its host is a literal non-public address the http step refuses
    (a name is resolved, and checked, at each delivery). JOBS.CALLBACKS_DISABLED: the operator
    set no JOBPLATFORM_CALLBACK_SECRET to sign callbacks with.
    """
    if not settings.JOBPLATFORM_CALLBACK_SECRET:
        raise InvalidInput(
            "JOBS.CALLBACKS_DISABLED",
            "this platform sends no callbacks: its operator set no JOBPLATFORM_CALLBACK_SECRET",
        )
    invalid = InvalidInput(
        "JOBS.INVALID_CALLBACK_URL",
        f"callback_url must be an http or https URL of at most {MAX_URL_LENGTH} characters",
    )
    if not 1 <= len(url) <= MAX_URL_LENGTH:
        raise invalid
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise invalid from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        return
    reason = policy_from_settings().refusal(parsed.host, address)
    if reason is not None:
        raise InvalidInput(
            "JOBS.CALLBACK_URL_REFUSED",
            f"callback_url points to {address} ({reason}), which this platform does not call",
            {"address": str(address), "reason": reason},
        )


def callback_key(*, owner_id: int) -> str:
    """The key that signs the callbacks of ``owner_id``'s jobs (``GET /api/v1/callbacks/key/``).

    Derived, not stored: HMAC-SHA256 of the owner's id under JOBPLATFORM_CALLBACK_SECRET, so
    rotating the secret rotates every owner's key. Each owner verifies with a key of its own: a
    client cannot sign a callback that another client's receiver would accept, which one key
    shared by every client would allow.
    """
    secret = settings.JOBPLATFORM_CALLBACK_SECRET.encode()
    return hmac.new(secret, f"{KEY_CONTEXT}{owner_id}".encode(), hashlib.sha256).hexdigest()


def callbacks_publish(*, job_id: UUID, event: str, has_url: bool) -> None:
    """The job just ended with ``event``: after the commit of that transition, publish one
    delivery to its callback_url (``has_url``) and one to the operator's webhook, if set.

    Call it in the transaction of the transition, and only when its UPDATE matched the row
    (:func:`callbacks_wanted` says whether to open one). The messages go through the outbox: a
    broker error is logged, does not fail the transition's caller (the worker's task, a cancel
    request), and a dispatcher publishes them later.
    """
    targets = [Target.JOB] if has_url else []
    if settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL:
        targets.append(Target.OPERATOR)
    for target in targets:
        args = [str(uuid4()), str(job_id), event, target.value]
        outbox_publish(task=DELIVER_TASK, args=args)


def callbacks_wanted(*, has_url: bool) -> bool:
    """Whether a job (``has_url``: it has a callback_url) sends anything when it ends: then its
    ending UPDATE runs in a transaction that the outbox's rows join."""
    return has_url or bool(settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL)


def callback_deliver(
    *, delivery_id: UUID, job_id: UUID, event: str, target: str, last_try: bool = False
) -> CallbackDelivery | None:
    """One attempt of a delivery, recorded; the row, or None when there is nothing to send (the
    delivery ended already: a redelivered message; the job is gone; the target unset since).

    Raises webhooks.WebhookDeliveryError when another attempt may succeed and ``last_try`` is
    False (the task retries it with backoff); the attempt's row then says ``retrying``.
    """
    earlier = list(
        CallbackDelivery.objects.filter(delivery_id=delivery_id).values_list("state", flat=True)
    )
    if State.DELIVERED in earlier or State.FAILED in earlier:
        return None
    job = Job.objects.select_related("owner").filter(id=job_id).first()
    if job is None:
        return None
    if target == Target.OPERATOR:
        url = settings.JOBPLATFORM_COMPLETION_WEBHOOK_URL
        secret = settings.JOBPLATFORM_COMPLETION_WEBHOOK_SECRET
        post = webhooks.plain_post  # the operator's own URL: may be private, as configured
    else:
        url, post = job.callback_url, guarded_post
        secret = callback_key(owner_id=job.owner_id) if settings.JOBPLATFORM_CALLBACK_SECRET else ""
    if not url or not secret:
        return None
    if State.PENDING in earlier:
        # The message came back without an answer to an earlier attempt: its worker was lost
        # mid-POST (the receiver may have it: at least once). Say so rather than "pending".
        CallbackDelivery.objects.filter(delivery_id=delivery_id, state=State.PENDING).update(
            state=State.RETRYING, error="lost: no answer was recorded", finished_at=timezone.now()
        )
    try:
        row = CallbackDelivery.objects.create(
            job=job,
            delivery_id=delivery_id,
            target=target,
            url=url,
            event=event,
            attempt=len(earlier) + 1,
        )
    except IntegrityError:
        # Another copy of this message records this attempt and sends it.
        logger.info("callback %s: attempt %d taken by another copy", delivery_id, len(earlier) + 1)
        return None
    state, status_code, error = State.DELIVERED, None, ""
    try:
        status_code = webhooks.deliver(
            url=url,
            secret=secret,
            event=event,
            delivery_id=str(delivery_id),
            body=payload(job, event=event, delivery_id=delivery_id),
            user_agent="jobplatform-callback",
            post=post,
        )
    except webhooks.WebhookRejected as exc:
        state, status_code, error = State.FAILED, exc.status_code, str(exc)
    except webhooks.WebhookDeliveryError as exc:
        state = State.FAILED if last_try else State.RETRYING
        status_code, error = exc.status_code, str(exc)
        _finish(row, state, status_code, error)
        if not last_try:
            raise
        logger.error("callback %s to %s: given up: %s", delivery_id, redact_url(url), error)
        return row
    _finish(row, state, status_code, error)
    if state == State.FAILED:
        shown = redact_url(url)
        logger.error("callback %s to %s: refused, not retried: %s", delivery_id, shown, error)
    return row


def _finish(row: CallbackDelivery, state: str, status_code: int | None, error: str) -> None:
    row.state, row.status_code, row.error = state, status_code, error
    row.finished_at = timezone.now()
    row.save(update_fields=["state", "status_code", "error", "finished_at"])


def payload(job: Job, *, event: str, delivery_id: UUID) -> dict[str, Any]:
    """The notification: the job as it ended, without its input, steps or result (GET the job
    for those: they may be large, and hold what the receiver need not see)."""
    status = {Event.SUCCEEDED: "succeeded", Event.FAILED: "failed", Event.CANCELLED: "cancelled"}
    last_error = job.last_error or {}
    return {
        "event": event,
        "delivery": str(delivery_id),
        "job": {
            "id": str(job.id),
            "name": job.name,
            "status": status.get(Event(event), job.status),
            "queue": job.queue,
            "owner": job.owner.get_username(),
            "trace_id": job.trace_id,
            "attempts": job.attempts,
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "error": (
                {"code": last_error.get("code", ""), "message": last_error.get("message", "")}
                if event == Event.FAILED
                else None
            ),
        },
    }


def guarded_post(url: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to a client's URL as the http step calls out: the host resolved once, every address
    allowed by JOBPLATFORM_HTTP_ALLOW (else WebhookRejected), the connection pinned to it (no DNS
    rebinding), no redirects followed, no proxy from the environment, the body not read."""
    target = httpx.URL(url)
    try:
        address = checked_address(target, policy_from_settings())
    except PermanentStepError as exc:
        raise webhooks.WebhookRejected(str(exc)) from exc
    except TransientStepError as exc:
        raise webhooks.WebhookDeliveryError(str(exc)) from exc
    client = http_client()
    request = client.build_request(
        "POST", target, content=raw, headers=headers, timeout=webhooks.TIMEOUT_SECONDS
    )
    with BACKEND.pinned(target.host, address):
        response = client.send(request, stream=True)
    # The status is all we need: the body, of the client's choosing and of any size, is never
    # read into the worker's memory.
    response.close()
    return response
