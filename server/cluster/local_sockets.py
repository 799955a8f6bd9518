"""LocalSockets: what the cluster layer needs from the node's signaling edge.

The Socket.IO namespace implements it; the bus hands it the events and closes
owners send to this node's sockets, and the router asks it which sockets the
node holds when it reconciles with an owner.
"""

from __future__ import annotations

from typing import Any, Protocol

from server.rooms.models import Caller, NodeRef


class LocalSockets(Protocol):
    """This node's joined sockets, by room."""

    async def deliver_room(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send a room's event to this node's sockets in the room."""

    async def deliver_session(self, session: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to one of this node's sockets (if it is still in a room)."""

    async def close_session(self, session: str, reason: str) -> None:
        """Close one of this node's sockets."""

    def sessions_in(self, room_id: str) -> list[Caller]:
        """The sockets of this node that joined the room."""

    def joining_in(self, room_id: str) -> list[str]:
        """The sessions of this node's sockets whose join to the room is in flight."""

    def rooms(self) -> list[str]:
        """Rooms in which this node holds joined sockets."""

    async def quiesce(self) -> None:
        """The node is draining: deliver nothing more to its sockets (they will rejoin
        elsewhere and get the whole session there)."""

    async def hand_off(self, nodes: list[NodeRef]) -> None:
        """Tell every socket to reconnect to one of `nodes`, then close it."""
