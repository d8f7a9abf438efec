"""Messages published after their transaction commits, and never lost between the two.

``transaction.on_commit`` publishes a message once the row it names is committed (DESIGN), but a
process that dies between the commit and the publish, or a broker that refuses the publish in
that instant, loses it. :func:`outbox_publish` writes the message as an ``OutboxMessage`` row in
the same transaction, publishes it after the commit and then deletes the row;
:func:`outbox_flush`, a dispatcher chore, publishes the rows that stayed.

At least once: a message published whose row was not yet deleted (the process died in between)
goes out twice, so its consumer deduplicates (the completion callbacks and the dead-letter
webhook are keyed by their delivery's id).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobplatform.celery import app as celery_app
from jobplatform.models import OutboxMessage

logger = logging.getLogger("jobplatform.outbox")


def outbox_publish(*, task: str, args: list[Any]) -> None:
    """Publish the Celery task ``task`` with ``args`` once the current transaction commits.

    Call it inside the transaction of the change the message announces: the message exists if
    and only if the change committed. A broker error at the publish is logged, not raised (the
    caller's change stands); the row stays and a dispatcher publishes it later.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_publish belongs in the transaction of the change it announces")
    row = OutboxMessage.objects.create(task=task, args=args)
    transaction.on_commit(partial(_send, row.id, task, args), robust=True)


def _send(row_id: int, task: str, args: list[Any]) -> None:
    celery_app.send_task(task, args=args)
    OutboxMessage.objects.filter(id=row_id).delete()


def outbox_flush(*, older_than: float, limit: int = 500) -> int:
    """Publish the messages written more than ``older_than`` seconds ago and still unpublished,
    at most ``limit``, oldest first; return how many. Dispatchers share the rows: each locks
    those it publishes (SKIP LOCKED), and deletes them in the same transaction."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(created_at__lt=cutoff)
            .order_by("id")[:limit]
        )
        if not rows:
            return 0
        with celery_app.producer_or_acquire() as producer:
            for row in rows:
                celery_app.send_task(row.task, args=row.args, producer=producer)
        OutboxMessage.objects.filter(id__in=[row.id for row in rows]).delete()
    logger.warning("published %d message(s) whose publish after commit never happened", len(rows))
    return len(rows)
