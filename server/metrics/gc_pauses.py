"""How long the garbage collector stopped this process: ``yitang_gc_pause_seconds``.

While a collection runs the node forwards nothing (server/gc_policy.py says
what keeps the pauses short); an operator sees them here, by generation (2: a
full collection), with the objects frozen out of collection at startup.
Garbage collection is per process, so the timing is too: :func:`record_pauses`
installs one ``gc.callbacks`` hook, and each registry's collector reads it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from server.metrics.histogram_buckets import cumulative_buckets

#: Bucket bounds of the pause histogram, in seconds.
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Pauses:
    """Every collection's pause in this process, by generation (GC is per process)."""

    def __init__(self) -> None:
        # generation -> counts per bucket (the last is +Inf) and the sum of seconds
        self.counts = {generation: [0] * (len(PAUSE_BUCKETS) + 1) for generation in range(3)}
        self.sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # gc.callbacks: runs at the start and the stop of each collection.
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation", 2)
        if generation not in self.counts:
            return
        seconds = time.perf_counter() - self._started
        self.sums[generation] += seconds
        counts = self.counts[generation]
        for index, bound in enumerate(PAUSE_BUCKETS):
            if seconds <= bound:
                counts[index] += 1
                break
        else:
            counts[-1] += 1


_pauses: _Pauses | None = None
#: The objects frozen at startup (record_frozen), or None if not noted.
_frozen: int | None = None


def record_frozen() -> None:
    """Note how many objects are frozen now (call right after ``gc.freeze()``).

    ``gc.get_freeze_count()`` walks the whole frozen list to count it (~20 ms for
    113 000 objects on the load test's machine, with the event loop and so the
    forwarding stopped): a scrape reads this note instead."""
    global _frozen
    _frozen = gc.get_freeze_count()


def record_pauses() -> None:
    """Time every collection of this process from now on (idempotent)."""
    global _pauses
    if _pauses is None:
        _pauses = _Pauses()
        gc.callbacks.append(_pauses)


class GcPauseCollector(Collector):
    """``yitang_gc_pause_seconds{generation}`` and ``yitang_gc_frozen_objects``, read when
    scraped (nothing if :func:`record_pauses` and :func:`record_frozen` were not called)."""

    def collect(self) -> Iterator[Any]:
        pauses = _pauses
        if _frozen is not None:
            frozen = GaugeMetricFamily(
                "yitang_gc_frozen_objects",
                "Objects frozen out of garbage collection at startup (never walked again)",
            )
            frozen.add_metric([], _frozen)
            yield frozen
        if pauses is None:
            return
        family = HistogramMetricFamily(
            "yitang_gc_pause_seconds",
            "How long each garbage collection stopped this process (no packet is forwarded "
            "meanwhile), by generation (2: full)",
            labels=["generation"],
        )
        for generation, counts in pauses.counts.items():
            buckets = cumulative_buckets(PAUSE_BUCKETS, counts)
            family.add_metric([str(generation)], buckets, pauses.sums[generation])
        yield family
