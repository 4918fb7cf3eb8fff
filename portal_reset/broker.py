"""The Redis broker transport: kombu's, publishing through one client.

kombu's Redis channel builds a new ``redis.Redis`` client (over the same
connection pool) for every message it publishes, and a client's
constructor fills a table of some 170 response callbacks: about 0.35 ms
of CPU per publish, a tenth of a patient's submission. This channel builds
that client once and keeps it, for as long as the channel keeps its pool. A ``redis.Redis`` client takes a connection
from its pool for each command, so one client serves every thread the way
the throwaway ones did; the pool, its connections and what is sent are
unchanged.

Used for ``redis://`` and ``rediss://`` broker URLs (settings.py:
CELERY_BROKER_TRANSPORT).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        # The channel renews its pool after a fork or a failed connection
        # (kombu's _disconnect_pools): the client follows it.
        if self._shared_client is None or self._shared_client.connection_pool is not self.pool:
            self._shared_client = self._create_client()
        yield self._shared_client


class Transport(redis.Transport):
    Channel = Channel
