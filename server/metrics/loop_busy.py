"""``yitang_event_loop_busy_seconds``: how long the node's event loop ran between two
waits for I/O; datagrams arriving meanwhile waited at least that long
(server/media/loop_busy.py says why it matters)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from server.media import loop_busy
from server.metrics.histogram_buckets import cumulative_buckets


class LoopBusyCollector(Collector):
    """The process's loop-busy histogram, read when scraped."""

    def collect(self) -> Iterator[Any]:
        times = loop_busy.busy_times()
        family = HistogramMetricFamily(
            "yitang_event_loop_busy_seconds",
            "How long this process's event loop ran callbacks, tasks and timers between "
            "two waits for I/O; media datagrams arriving meanwhile were forwarded only "
            "after it",
        )
        family.add_metric([], cumulative_buckets(times.bounds, times.counts), times.sum)
        yield family
