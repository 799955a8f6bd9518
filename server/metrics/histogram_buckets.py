"""Prometheus histogram buckets from counts kept per bucket (as C and GC callbacks keep them)."""

from __future__ import annotations

from collections.abc import Sequence


def cumulative_buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, int]]:
    """[(le, count at or under it)] for a HistogramMetricFamily: ``counts`` has one more
    entry than ``bounds``, the last for +Inf."""
    cumulative, buckets = 0, []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
    return buckets
