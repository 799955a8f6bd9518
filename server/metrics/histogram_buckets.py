"""Prometheus histogram buckets from counts kept per bucket (as C and GC callbacks keep them),
and the collector of a histogram kept in Python by this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from server.media.process_histogram import HistogramCopy


def cumulative_buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, int]]:
    """[(le, count at or under it)] for a HistogramMetricFamily: ``counts`` has one more
    entry than ``bounds``, the last for +Inf."""
    cumulative, buckets = 0, []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
    return buckets


class ProcessHistogramCollector(Collector):
    """One histogram this process keeps (server/media/process_histogram.py), read when
    scraped: ``read`` gives its copy."""

    def __init__(self, name: str, documentation: str, read: Callable[[], HistogramCopy]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterator[Any]:
        """The histogram as it is now."""
        copy = self._read()
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], cumulative_buckets(copy.bounds, copy.counts), copy.sum)
        yield family
