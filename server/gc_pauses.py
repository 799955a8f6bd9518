"""Garbage collection on a node: fewer and shorter stops of the event loop, and how long they were.

CPython's cyclic collector stops the process while it walks the objects of the
generations it collects; a full collection walks every tracked object. While it
runs no packet is forwarded, so every subscriber's video stalls at once. On the
load test's machine (README, *Load test*), a node forwarding a 36-participant
session held ~475 000 tracked objects, and the full collections that the joins'
growth set off took 110–220 ms each, six of them in five seconds.

Two measures, both CPython's own knobs:

* :func:`settle_after_startup` freezes (``gc.freeze``) what exists once the node
  has started: modules, classes, the application (~110 000 objects). They live as
  long as the process; no collection walks them again. Nothing is lost: a
  frozen object freed by its reference count is freed as before, and nothing
  made later is frozen (what a session makes and leaves as garbage is collected).
* a full collection waits for :data:`FULL_AFTER` collections of the middle
  generation instead of CPython's 10 (it still waits, too, until a quarter more
  objects have survived into the oldest generation since the last one). A burst
  of joins, which grows the heap fast, then sets off one or two full
  collections instead of one every half second. Young garbage is collected as
  before; a cycle that became garbage after it grew old waits longer.

:class:`GcPauseCollector` exports the pauses (``yitang_gc_pause_seconds``, by
generation) and the frozen objects, so that an operator sees them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

#: Collections of the middle generation before a full one may run (CPython: 10).
FULL_AFTER = 100
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


def record_pauses() -> None:
    """Time every collection of this process from now on (idempotent)."""
    global _pauses
    if _pauses is None:
        _pauses = _Pauses()
        gc.callbacks.append(_pauses)


def settle_after_startup() -> None:
    """Freeze what the node made while starting, and make full collections rarer (see the
    module). Call once in a node process, when it is ready to serve."""
    gc.collect()  # what startup left as garbage is not frozen with the rest
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER)


class GcPauseCollector(Collector):
    """``yitang_gc_pause_seconds{generation}`` and ``yitang_gc_frozen_objects``, read when
    scraped (nothing if :func:`record_pauses` was not called)."""

    def collect(self) -> Iterator[Any]:
        pauses = _pauses
        frozen = GaugeMetricFamily(
            "yitang_gc_frozen_objects",
            "Objects frozen out of garbage collection at startup (never walked again)",
        )
        frozen.add_metric([], gc.get_freeze_count())
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
            cumulative, buckets = 0, []
            for bound, count in zip((*PAUSE_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric([str(generation)], buckets, pauses.sums[generation])
        yield family
