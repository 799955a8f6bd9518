"""Where a room nobody owns goes: the least loaded live node that may take it.

A room is placed when the first node that needs it finds no owner (a first
join, or its owner died). Placing it on the node that happened to receive the
join would put every room of a box on one process whenever the kernel's
SO_REUSEPORT hash sends their first joins there; so the node asks the least
loaded node instead (fewest rooms, then fewest participants), skipping
draining nodes and nodes at their room cap.

Which nodes are live is read from the registry when a room is placed (a
node started a moment ago is a candidate at once; placing is rare, one read
is nothing). Their loads are as of their last heartbeats; a node that placed
rooms since its own last heartbeat counts them itself, so that two rooms
opened in the same second do not both go to the node that was least loaded a
second ago. The cap is enforced by the taking node itself
(`RoomDirectory.acquire`), so a stale view can make a placement try a full
node, never overfill it.
"""

from __future__ import annotations

from collections import Counter

from server.state.nodes import NodeInfo


class Placement:
    """Orders the candidate owners of a room by load, as this node knows it."""

    def __init__(self, self_id: str, max_rooms: int | None) -> None:
        self.self_id = self_id
        self.max_rooms = max_rooms
        self._nodes: list[NodeInfo] = []
        #: Rooms this node placed on each node since the registry was last read.
        self._placed: Counter[str] = Counter()

    def update(self, live_nodes: list[NodeInfo]) -> None:
        """The registry as this node's heartbeat read it (it has just announced its own
        rooms, so its own placements so far are counted there or by other nodes soon)."""
        self._nodes = list(live_nodes)
        self._placed.clear()

    def refresh(self, live_nodes: list[NodeInfo]) -> None:
        """The registry read at a placement: newer nodes, but the placements this node made
        since its heartbeat are still its own to count."""
        self._nodes = list(live_nodes)

    def candidates(self) -> list[str]:
        """Node ids to ask, least loaded first: live, not draining, not known to be full."""
        eligible = [
            node
            for node in self._nodes
            if not node.draining and (self.max_rooms is None or self._rooms(node) < self.max_rooms)
        ]
        # Between equals this node comes first: its socket needs no hop to the owner.
        eligible.sort(
            key=lambda node: (
                self._rooms(node),
                node.participants,
                node.id != self.self_id,
                node.id,
            )
        )
        return [node.id for node in eligible]

    def placed(self, node_id: str) -> None:
        """A room was just placed on this node (counted until the next registry read)."""
        self._placed[node_id] += 1

    def _rooms(self, node: NodeInfo) -> int:
        return node.rooms + self._placed[node.id]
