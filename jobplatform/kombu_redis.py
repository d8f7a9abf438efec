"""kombu's Redis transport, with one command client per connection pool instead of one per use.

kombu's Redis channel makes a new ``redis.Redis`` object for every command it sends outside the
consumer's BRPOP (``Channel.conn_or_acquire``): the unacknowledged-message bookkeeping of every
delivery (``QoS.append``) and of every ack (``QoS.ack``), and every publish. Building one copies
redis-py's table of ~250 response callbacks into a fresh dict: about 80 µs of CPU on this
machine, twice per job in the worker's main process, which every hand-off passes through, and
once per message in the dispatcher (docs/performance.md, "k = 1: where the worker's CPU goes").

The object holds no connection and no per-command state (a command takes a connection from the
pool and gives it back; a pipeline is an object of its own), and redis-py's client is
thread-safe, so one per pool is what kombu would use if it kept one: the commands sent, and the
connections they go over, are the same. The pool is the channel's own; a new pool (a channel
that reconnected) gets a new client. The consumer's BRPOP and the fanout subscription keep the
clients kombu gives them.

Used for ``redis://`` brokers (``jobplatform.brokers.BrokerSettings``); ``rediss://`` and
``redis+socket://`` keep kombu's transport as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _command_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        cached = self._command_client
        if cached is None or cached.connection_pool is not self.pool:
            cached = self._command_client = self._create_client()  # type: ignore[attr-defined]
        yield cached


class Transport(kombu_redis.Transport):
    Channel = Channel
