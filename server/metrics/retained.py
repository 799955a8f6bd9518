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

from collections.abc import Hashable, Mapping, Set


class RetainedTotals:
    """Monotonic totals per group from the current values of live objects.

    An object key is only meaningful while the object lives (`id()` is fine).
    A group can be updated on its own (`update_group`), so that a reader with
    many objects can take one group per turn of the event loop.
    """

    def __init__(self) -> None:
        self._last: dict[str, dict[Hashable, float]] = {}
        self._retired: dict[str, float] = {}

    def groups(self) -> Set[str]:
        """The groups seen so far (a group whose objects are all gone is still one)."""
        return self._retired.keys() | self._last.keys()

    def update_group(self, group: str, current: Mapping[Hashable, float]) -> float:
        """Take the live objects' values of one group now; return the group's total."""
        retired = self._retired.get(group, 0.0)
        for key, value in self._last.get(group, {}).items():
            now = current.get(key)
            # Gone, or counting from zero again (a new object that got a dead one's id).
            if now is None or now < value:
                retired += value
        self._retired[group] = retired
        self._last[group] = dict(current)
        return retired + sum(current.values())

    def update(self, current: Mapping[tuple[str, Hashable], float]) -> dict[str, float]:
        """Take the live objects' values now, keyed `(group, object key)`; return the
        total of each group."""
        by_group: dict[str, dict[Hashable, float]] = {}
        for (group, key), value in current.items():
            by_group.setdefault(group, {})[key] = value
        return {
            group: self.update_group(group, by_group.get(group, {}))
            for group in self.groups() | by_group.keys()
        }
