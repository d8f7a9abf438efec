"""Reads on dead letters. Visibility follows the job's: the dead letters of a user's own jobs and
their teams', an admin's all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Max, Min, QuerySet

from deadletter.models import DeadLetter, DeadLetterAction
from jobplatform.access import owned_by_visible
from jobplatform.errors import NotFound


def dead_letter_list(*, user: User) -> QuerySet[DeadLetter]:
    entries = DeadLetter.objects.select_related("job", "job__owner", "resolved_by")
    return owned_by_visible(entries, user, "job__owner")


def dead_letter_get_visible(*, dead_letter_id: int, user: User) -> DeadLetter:
    """The entry, if ``user`` may see it; otherwise NotFound, so others' ids are not disclosed."""
    try:
        return dead_letter_list(user=user).get(id=dead_letter_id)
    except DeadLetter.DoesNotExist:
        raise NotFound("DEADLETTER.NOT_FOUND", f"no dead letter {dead_letter_id}") from None


def dead_letter_actions(*, dead_letter_id: int) -> QuerySet[DeadLetterAction]:
    """The entry's audit trail, oldest first."""
    return DeadLetterAction.objects.filter(dead_letter_id=dead_letter_id).order_by(
        "created_at", "id"
    )


@dataclass(frozen=True)
class Group:
    """Dead letters that failed the same way: same step type, error type and message pattern."""

    fingerprint: str
    step_type: str
    error_type: str
    message_pattern: str
    count: int
    first_seen: datetime
    last_seen: datetime
    example: DeadLetter  # the most recent entry of the group


def dead_letter_groups(*, entries: QuerySet[DeadLetter], limit: int = 100) -> list[Group]:
    """Groups of ``entries`` by fingerprint, the largest first (two queries)."""
    rows = list(
        entries.order_by()
        .values("fingerprint", "step_type", "error_type", "message_pattern")
        .annotate(
            count=Count("id"),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            example_id=Max("id"),  # ids grow with time: the latest entry of the group
        )
        .order_by("-count", "-last_seen", "fingerprint")[:limit]
    )
    examples = DeadLetter.objects.select_related("job").in_bulk([r["example_id"] for r in rows])
    return [
        Group(
            fingerprint=r["fingerprint"],
            step_type=r["step_type"],
            error_type=r["error_type"],
            message_pattern=r["message_pattern"],
            count=r["count"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            example=examples[r["example_id"]],
        )
        for r in rows
    ]


def dead_letter_stats(*, entries: QuerySet[DeadLetter]) -> dict[str, Any]:
    """Open entries among ``entries``, counted by reason, by queue and by both (one query)."""
    rows = (
        entries.filter(state=DeadLetter.State.OPEN)
        .order_by()
        .values("reason", "job__queue")
        .annotate(count=Count("id"))
        .order_by("reason", "job__queue")
    )
    by_reason: dict[str, int] = {}
    by_queue: dict[str, int] = {}
    pairs = []
    for row in rows:
        reason, queue, count = row["reason"], row["job__queue"], row["count"]
        by_reason[reason] = by_reason.get(reason, 0) + count
        by_queue[queue] = by_queue.get(queue, 0) + count
        pairs.append({"reason": reason, "queue": queue, "count": count})
    return {
        "open": sum(by_reason.values()),
        "by_reason": by_reason,
        "by_queue": by_queue,
        "by_reason_and_queue": pairs,
    }


def dead_letter_open_by_queue() -> dict[str, int]:
    """Open dead letters by the queue of their job (the metrics' gauge)."""
    rows = (
        DeadLetter.objects.filter(state=DeadLetter.State.OPEN)
        .order_by()
        .values_list("job__queue")
        .annotate(count=Count("id"))
    )
    return dict(rows)
