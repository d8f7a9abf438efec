"""Noticing that the broker lost its messages, from the broker itself (DESIGN §3).

A Redis that restarts without persistence, fails over to an empty replica or is flushed loses
every message it held: the QUEUED jobs' messages, the messages workers had reserved, and the
retry messages (``Task.retry`` with a countdown) that workers hold until they are due, which a
worker drops when its connection to the broker breaks. The jobs' rows still say what was lost.
Without this watch the dispatcher finds them only ``JOBPLATFORM_REDELIVER_AFTER`` (300 s) after
they were due; with it, within ``JOBPLATFORM_BROKER_CHECK_INTERVAL`` of the broker's return.

Each check is one round trip (``INFO server`` and this dispatcher's marker key, pipelined):

- another ``run_id``: the broker restarted (or another server answers): every message published
  before it started may be lost. Its start is ``now - uptime_in_seconds``.
- the marker key gone, same ``run_id``: the data was flushed: every message published before now.
- the first check after the dispatcher starts counts as a restart: a broker restarted while no
  dispatcher ran (a machine that rebooted) has lost the messages published before it started.

A restart with persistence (AOF, RDB) may have kept its messages: they are published again all
the same, and the second message of a job finds nothing to claim.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import redis
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobplatform import metrics

logger = logging.getLogger("jobplatform.dispatcher")

# Added to the broker's start: uptime is whole seconds, and job rows are stamped by PostgreSQL's
# clock. A message published in this margin after the restart may be published twice (harmless);
# none published before it is missed.
MARGIN = timedelta(seconds=2)
MARKER_TTL = 86400  # seconds; refreshed at every check, gone a day after its dispatcher stopped


class BrokerWatch:
    """Tells, at each :meth:`check`, whether the broker lost messages since the last one."""

    def __init__(self, broker_url: str) -> None:
        self.client: Any = None
        if broker_url.startswith(("redis://", "rediss://", "unix://")):
            # One immediate retry, on a new connection: the pooled one died with a restarted
            # server. No more: a broker that is down must not hold the dispatcher's loop.
            self.client = redis.Redis.from_url(
                broker_url,
                socket_timeout=2,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), retries=1),
            )
        else:
            logger.warning("broker watch off: not a Redis URL (%s)", broker_url.split(":", 1)[0])
        self.marker = f"jobplatform:dispatcher:{uuid.uuid4().hex}"
        self.run_id: str | None = None
        self.reachable = True

    def check(self) -> datetime | None:
        """The time before which published messages are lost, if the broker lost data since
        the last check; None if it did not (or cannot be asked now)."""
        if self.client is None:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.info("server")
            pipe.exists(self.marker)
            pipe.set(self.marker, "1", ex=MARKER_TTL)
            info, marker_kept, _ = pipe.execute()
        except redis.RedisError as exc:
            if self.reachable:
                logger.warning("broker unreachable: %s", exc)
            self.reachable = False
            return None
        if not self.reachable:
            logger.info("broker reachable again")
            self.reachable = True
        now = timezone.now()
        run_id = str(info["run_id"])
        started = now - timedelta(seconds=int(info["uptime_in_seconds"]))
        previous, self.run_id = self.run_id, run_id
        if previous is None:
            return started + MARGIN
        if run_id != previous:
            metrics.BROKER_LOSSES.inc()
            logger.warning(
                "the broker restarted (run_id %s -> %s, up since %s): its messages are lost",
                previous[:8],
                run_id[:8],
                started.isoformat(timespec="seconds"),
            )
            return started + MARGIN
        if not marker_kept:
            metrics.BROKER_LOSSES.inc()
            logger.warning("the broker lost its data (a flush?): its messages are lost")
            return now
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
