"""A histogram of durations that one process keeps in Python and reads whole.

A node runs one event loop, so one histogram per process needs no lock; what it
measures (server/media/rtcp_handling.py, server/media/loop_busy.py) says why.
Exported through server/metrics/histogram_buckets.py's `ProcessHistogramCollector`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HistogramCopy:
    """A copy of a histogram: ``counts`` has one entry per bound and a last one for
    +Inf (not cumulative); ``sum`` is in seconds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float


class ProcessHistogram:
    """Counts per bucket and the sum of what was observed."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._first = self.bounds[0]
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration. Most fall in the first bucket: no search for those."""
        self._sum += seconds
        if seconds <= self._first:
            self._counts[0] += 1
        else:
            # bisect_left: a time equal to a bound belongs to that bound's bucket (le).
            self._counts[bisect.bisect_left(self.bounds, seconds, lo=1)] += 1

    def copy(self) -> HistogramCopy:
        """The histogram so far."""
        return HistogramCopy(self.bounds, tuple(self._counts), self._sum)
