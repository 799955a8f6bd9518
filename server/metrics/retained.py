"""Counter totals over objects that come and go (peer connections, senders, forwarders).

The media layer keeps its counters on the objects that do the work; when a
participant leaves, its objects and their counts go. A Prometheus counter must
never go down (a drop reads as a restart, and `rate()` would count the whole
remaining total again), so what an object had counted when it was last seen is
kept here after it is gone. Counts it made between that last look and its end
are not seen: scrapes and samples are seconds apart, a participant's last
seconds at most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping


class RetainedTotals:
    """Monotonic totals per group from the current values of live objects.

    Keys of `update` are `(group, object key)`; an object key is only
    meaningful while the object lives (`id()` is fine).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, Hashable], float] = {}
        self._retired: defaultdict[str, float] = defaultdict(float)

    def update(self, current: Mapping[tuple[str, Hashable], float]) -> dict[str, float]:
        """Take the live objects' values now; return the total of each group."""
        for key, value in self._last.items():
            now = current.get(key)
            # Gone, or counting from zero again (a new object that got a dead one's id).
            if now is None or now < value:
                self._retired[key[0]] += value
        self._last = dict(current)
        totals = dict(self._retired)
        for (group, _), value in current.items():
            totals[group] = totals.get(group, 0.0) + value
        return totals
