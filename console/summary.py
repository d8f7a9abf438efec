"""The operator's summary: every queue's depth, oldest due job, last hour, dead letters, workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from deadletter.models import DeadLetter
from deadletter.selectors import dead_letter_stats
from executions.selectors import WorkerSeen, worker_list
from jobs.selectors import QueueSummary, job_queue_summary

# A worker whose last sign of life is older than this is shown as silent.
WORKER_SILENT_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class QueueRow:
    summary: QueueSummary
    open_dead_letters: int
    oldest_due_age: timedelta | None


@dataclass(frozen=True)
class Summary:
    at: datetime
    queues: list[QueueRow]
    open_dead_letters: int
    workers: list[WorkerSeen]

    @property
    def workers_alive(self) -> int:
        return sum(1 for w in self.workers if self.at - w.last_seen <= WORKER_SILENT_AFTER)


def operator_summary(*, now: datetime | None = None) -> Summary:
    """Four queries, whatever the number of jobs, queues or workers."""
    now = now or timezone.now()
    stats = dead_letter_stats(entries=DeadLetter.objects.all())
    by_queue: dict[str, int] = stats["by_queue"]
    queues = {s.queue: s for s in job_queue_summary(now=now)}
    rows = []
    for name in sorted(queues.keys() | by_queue.keys()):
        queue = queues.get(name) or QueueSummary(name, 0, 0, 0, 0, 0, None, 0, 0, 0)
        oldest = queue.oldest_due_at
        rows.append(
            QueueRow(
                summary=queue,
                open_dead_letters=by_queue.get(name, 0),
                oldest_due_age=now - oldest if oldest is not None else None,
            )
        )
    return Summary(at=now, queues=rows, open_dead_letters=stats["open"], workers=worker_list())
