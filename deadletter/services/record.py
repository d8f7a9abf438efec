"""Recording a dead letter (in the worker's transaction) and notifying the webhook about it."""

from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deadletter import webhooks
from deadletter.fingerprints import fingerprint, normalise_message
from deadletter.models import DeadLetter
from jobplatform import metrics
from jobplatform.outbox import outbox_publish
from jobs.models import Job
from jobs.redaction import redact_steps
from jobs.steps import AttemptError

logger = logging.getLogger("jobplatform.deadletter")

State = DeadLetter.State

NOTIFY_TASK = "deadletter.notify_webhook"


def dead_letter_record(
    *,
    job_id: UUID,
    reason: str,
    error: AttemptError,
    attempts: int,
    worker: str = "",
) -> DeadLetter:
    """Keep a job that just ended FAILED, with its final error and a snapshot of the job.

    The caller holds the transaction of the FAILED transition: the entry exists if and only if the
    transition committed. The webhook, if configured, is published only after that commit.
    """
    policy_fields = ("max_retries", "retry_backoff", "retry_backoff_max", "retry_jitter", "timeout")
    job = Job.objects.values("steps", "input", "queue", *policy_fields).get(id=job_id)
    message = error.message
    step_type = error.step_type or ""
    error_type = error.type
    pattern = normalise_message(message)
    now = timezone.now()
    # The job left FAILED without a dead-letter retry (some other path): its old entry is settled,
    # and the job keeps one open entry.
    DeadLetter.objects.filter(job_id=job_id, state=State.OPEN).update(
        state=State.RETRIED, resolved_at=now, note="the job failed again"
    )
    dead = DeadLetter.objects.create(
        job_id=job_id,
        reason=reason,
        error=error.as_dict(),
        error_type=error_type[:200],
        error_code=error.code[:100],
        error_message=message,
        step_type=step_type[:100],
        step_index=error.step_index,
        message_pattern=pattern,
        fingerprint=fingerprint(step_type=step_type, error_type=error_type, pattern=pattern),
        attempts=attempts,
        worker=worker[:255],
        # The snapshot is for reading (the retry runs the job row): secret params stay out.
        steps=redact_steps(job["steps"]),
        input=job["input"],
        retry_policy={key: job[key] for key in policy_fields},
        created_at=now,
    )
    # Counted once the failure commits: a rolled-back one never happened.
    transaction.on_commit(metrics.DEAD_LETTERS.labels(job["queue"], reason).inc)
    if settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL:
        # Through the outbox, after commit: a rolled-back failure is never announced, the worker
        # does not wait for the receiver, and a broker error here is logged (the message is
        # published later by a dispatcher), it does not fail the job's task.
        outbox_publish(task=NOTIFY_TASK, args=[dead.id])
    return dead


def dead_letter_notify(*, dead_letter_id: int) -> bool:
    """POST the entry to the configured webhook; True if the receiver accepted it now.

    Raises webhooks.WebhookDeliveryError when a retry may succeed (the task retries it with
    backoff); a refusal (4xx) is logged and not retried. An entry already delivered (a redelivered
    message) or purged since is skipped.
    """
    url = settings.JOBPLATFORM_DEADLETTER_WEBHOOK_URL
    if not url:
        return False
    dead = (
        DeadLetter.objects.select_related("job", "job__owner")
        .filter(id=dead_letter_id, notified_at__isnull=True)
        .first()
    )
    if dead is None:
        return False
    try:
        webhooks.deliver(
            url=url,
            secret=settings.JOBPLATFORM_DEADLETTER_WEBHOOK_SECRET,
            delivery_id=str(dead.id),
            body=webhooks.payload(dead),
        )
    except webhooks.WebhookRejected as exc:
        logger.error("dead letter %s: webhook refused, not retried: %s", dead.id, exc)
        return False
    DeadLetter.objects.filter(id=dead.id, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    return True
