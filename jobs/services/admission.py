"""Admission control: a submission that would take its owner, or the whole platform, past a cap
on unfinished jobs is refused whole, with 429 JOBS.TOO_MANY_UNFINISHED and Retry-After
(docs/architecture.md#admission-control).

Counting a backlog costs PostgreSQL about a microsecond per unfinished job (a count through the
partial indexes job_ready and job_in_flight, which hold no finished job): milliseconds for a
backlog of tens of thousands, which a submission must not pay each time. So each process counts
an owner's jobs (and all jobs) at most every JOBPLATFORM_ADMISSION_RECOUNT seconds, or less
often when the count itself is slow, and adds its own submissions in between. Submissions of
other processes within that window may take a cap a little past its limit: admission control is
back-pressure, not an invariant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from jobplatform.db import prepared_cursor
from jobplatform.errors import TooManyRequests
from jobs import lifecycle
from jobs.lifecycle import sql_in

_WAITING = sql_in(lifecycle.RELEASE.sources)
_IN_FLIGHT = sql_in(lifecycle.IN_FLIGHT)
# A count this slow makes the next one wait this many times as long, so that counting never
# takes more than a few percent of a process however large the backlog grows.
_SLOW_COUNT_FACTOR = 20
_MAX_REMEMBERED_OWNERS = 10_000

# The owner's cap (its quota, else the default; 0: none), and only if it has one, its unfinished
# jobs: waiting ones through job_ready (queue, owner, ...) and in-flight ones through
# job_in_flight (queue, owner), both read by their leading columns.
_OWNER_SQL = f"""
WITH cap AS (
    SELECT COALESCE(
        (SELECT max_unfinished FROM jobs_ownerquota WHERE owner_id = %(owner)s), %(default)s
    ) AS cap
)
SELECT cap, CASE WHEN cap > 0 THEN
    (SELECT count(*) FROM jobs_job
     WHERE status IN {_WAITING} AND queue = ANY(%(queues)s) AND owner_id = %(owner)s)
  + (SELECT count(*) FROM jobs_job
     WHERE status IN {_IN_FLIGHT} AND queue = ANY(%(queues)s) AND owner_id = %(owner)s)
END
FROM cap
"""
_TOTAL_SQL = f"""
SELECT (SELECT count(*) FROM jobs_job WHERE status IN {_WAITING})
     + (SELECT count(*) FROM jobs_job WHERE status IN {_IN_FLIGHT})
"""


@dataclass
class _Count:
    cap: int  # 0: no cap
    unfinished: int
    counted_at: float
    valid_for: float


class Admission:
    """This process's counts of unfinished jobs, per owner and in all, and the check on them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()  # gunicorn threads share the counts
        self._owners: dict[Any, _Count] = {}
        self._total: _Count | None = None

    def check(self, *, owner_id: Any, count: int) -> None:
        """Raise TooManyRequests if ``count`` more jobs would take the owner, or the platform,
        past its cap."""
        owner = self._owner(owner_id)
        if owner.cap and owner.unfinished + count > owner.cap:
            self._refuse("owner", owner, count)
        total = self._all()
        if total.cap and total.unfinished + count > total.cap:
            self._refuse("platform", total, count)

    def admitted(self, *, owner_id: Any, count: int) -> None:
        """``count`` jobs of the owner were stored: count them until the next recount."""
        with self._lock:
            if owner_id in self._owners:
                self._owners[owner_id].unfinished += count
            if self._total is not None:
                self._total.unfinished += count

    def owner_usage(self, *, owner_id: Any) -> tuple[int, int]:
        """(cap, unfinished) of an owner, counted now (the limits endpoint)."""
        count = self._count_owner(owner_id)
        return count.cap, count.unfinished

    def _owner(self, owner_id: Any) -> _Count:
        with self._lock:
            count = self._owners.get(owner_id)
        if count is not None and self.clock() - count.counted_at < count.valid_for:
            return count
        count = self._count_owner(owner_id)
        with self._lock:
            if len(self._owners) >= _MAX_REMEMBERED_OWNERS:
                self._owners.clear()
            self._owners[owner_id] = count
        return count

    def _all(self) -> _Count:
        cap = settings.JOBPLATFORM_MAX_UNFINISHED
        if not cap:
            return _Count(cap=0, unfinished=0, counted_at=0.0, valid_for=0.0)
        with self._lock:
            count = self._total
        if count is not None and self.clock() - count.counted_at < count.valid_for:
            count.cap = cap
            return count
        began = self.clock()
        with prepared_cursor() as cursor:
            cursor.execute(_TOTAL_SQL, prepare=True)
            row = cursor.fetchone()
        count = self._counted(cap, row[0] if row else 0, began)
        with self._lock:
            self._total = count
        return count

    def _count_owner(self, owner_id: Any) -> _Count:
        began = self.clock()
        params = {
            "owner": owner_id,
            "default": settings.JOBPLATFORM_MAX_UNFINISHED_PER_OWNER,
            "queues": list(settings.JOBPLATFORM_QUEUES),
        }
        with prepared_cursor() as cursor:
            cursor.execute(_OWNER_SQL, params, prepare=True)
            row = cursor.fetchone()
        cap, unfinished = row if row else (0, None)
        return self._counted(cap, unfinished or 0, began)

    def _counted(self, cap: int, unfinished: int, began: float) -> _Count:
        now = self.clock()
        valid_for = max(settings.JOBPLATFORM_ADMISSION_RECOUNT, _SLOW_COUNT_FACTOR * (now - began))
        if not settings.JOBPLATFORM_ADMISSION_RECOUNT:
            valid_for = 0.0
        return _Count(cap=cap, unfinished=unfinished, counted_at=now, valid_for=valid_for)

    def _refuse(self, scope: str, count: _Count, asked: int) -> None:
        whose = "you have" if scope == "owner" else "the platform has"
        raise TooManyRequests(
            "JOBS.TOO_MANY_UNFINISHED",
            f"{whose} {count.unfinished} unfinished jobs and the limit is {count.cap}: "
            f"{asked} more would pass it. Submit again once some have finished.",
            {"scope": scope, "limit": count.cap, "unfinished": count.unfinished, "asked": asked},
            retry_after=settings.JOBPLATFORM_ADMISSION_RETRY_AFTER,
        )


admission = Admission()
