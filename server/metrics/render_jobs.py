"""Combined-video render jobs by state, from the RQ queue in Redis (shared by every node).

Reading is a few blocking Redis calls (RQ's client is synchronous), so it is
done in a thread before each scrape is rendered (`refresh`), bounded in time;
the collector reports what was read last. The counts are the queue's and its
registries' sizes, read directly: RQ's own `count` properties would also clean
the registries up, which is the workers' business, not a scrape's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from server.recording.jobs import QUEUE_NAME

logger = logging.getLogger(__name__)

#: A refresh gives up after this long (the scrape goes on with what was read before).
REFRESH_TIMEOUT = 2.0
STATES = ("queued", "started", "deferred", "scheduled", "finished", "failed")


class RenderJobCollector(Collector):
    """`yitang_render_jobs{state}` from the render queue."""

    def __init__(self, redis_url: str, queue_name: str = QUEUE_NAME) -> None:
        self.redis_url = redis_url
        self.queue_name = queue_name
        self._counts: dict[str, int] | None = None
        self._connection: redis.Redis | None = None
        self._lock = threading.Lock()

    def read(self) -> dict[str, int]:
        """The number of jobs in each state (blocking)."""
        with self._lock:
            if self._connection is None:
                self._connection = redis.Redis.from_url(
                    self.redis_url, socket_timeout=REFRESH_TIMEOUT
                )
            connection = self._connection
        name = self.queue_name
        queue = Queue(name, connection=connection)
        registries = {
            "started": StartedJobRegistry(name, connection=connection),
            "deferred": DeferredJobRegistry(name, connection=connection),
            "scheduled": ScheduledJobRegistry(name, connection=connection),  # type: ignore[no-untyped-call]
            "finished": FinishedJobRegistry(name, connection=connection),
            "failed": FailedJobRegistry(name, connection=connection),
        }
        with connection.pipeline(transaction=False) as pipe:
            pipe.llen(queue.key)
            for registry in registries.values():
                pipe.zcard(registry.key)
            values = pipe.execute()
        return dict(zip(("queued", *registries), (int(v) for v in values), strict=True))

    async def refresh(self) -> None:
        """Read the counts in a thread, within REFRESH_TIMEOUT; keep the old ones on failure."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                self._counts = await asyncio.to_thread(self.read)
        except Exception as exc:
            logger.warning("render job states not read: %s", exc)
            self._counts = None

    def close(self) -> None:
        """Close the Redis connection (idempotent)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def describe(self) -> list[Metric]:
        """Nothing up front (the registry would otherwise collect at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The last counts read (nothing if the last read failed)."""
        if self._counts is None:
            return
        family = GaugeMetricFamily(
            "yitang_render_jobs",
            "Combined-video render jobs by state (the deployment's queue, not this node's)",
            labels=["state"],
        )
        for state in STATES:
            family.add_metric([state], self._counts.get(state, 0))
        yield family
