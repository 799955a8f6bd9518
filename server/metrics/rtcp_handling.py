"""``yitang_rtcp_handling_seconds``: how long the node took for each compound RTCP
packet it received (server/media/rtcp_handling.py says why it matters)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from server.media import rtcp_handling
from server.metrics.histogram_buckets import cumulative_buckets


class RtcpHandlingCollector(Collector):
    """The process's RTCP handling histogram, read when scraped."""

    def collect(self) -> Iterator[Any]:
        times = rtcp_handling.handling_times()
        family = HistogramMetricFamily(
            "yitang_rtcp_handling_seconds",
            "How long this process took to handle each compound RTCP packet it received "
            "(receiver and sender reports, REMB, NACK, PLI: unprotect, parse, handlers); "
            "nothing is forwarded meanwhile",
        )
        family.add_metric([], cumulative_buckets(times.bounds, times.counts), times.sum)
        yield family
