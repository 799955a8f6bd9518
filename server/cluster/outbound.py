"""OwnerOutbound: an owner's events to the sockets of its rooms, on this node or others.

Sockets held by this node get them directly; other nodes get broadcasts on the
room's channel (only when one of them holds a participant) and per-connection
events on their own channel. Payloads are dumped to JSON once.
"""

from __future__ import annotations

from pydantic import BaseModel

from server.cluster.bus import Bus
from server.cluster.local_sockets import LocalSockets
from server.cluster.messages import RoomBroadcast, SessionClose, SessionEvent
from server.rooms.ports import SessionRef
from server.state import keys


class OwnerOutbound:
    """`server.rooms.ports.RoomDelivery` over this node's sockets and the bus."""

    def __init__(self, node_id: str, local: LocalSockets, bus: Bus) -> None:
        self.node_id = node_id
        self.local = local
        self.bus = bus

    async def broadcast(
        self, room_id: str, seq: int, event: str, payload: BaseModel, nodes: frozenset[str]
    ) -> None:
        """Send a room's event to every joined socket, here and on the nodes in `nodes`."""
        data = payload.model_dump(mode="json")
        await self.local.deliver_room(room_id, event, data)
        if nodes - {self.node_id}:
            message = RoomBroadcast(
                room=room_id, owner=self.node_id, seq=seq, event=event, payload=data
            )
            self.bus.publish(keys.room_channel(room_id), message)

    async def send(self, room_id: str, to: SessionRef, event: str, payload: BaseModel) -> None:
        """Send an event to one connection, wherever it is."""
        data = payload.model_dump(mode="json")
        if to.node == self.node_id:
            await self.local.deliver_session(to.session, event, data)
        else:
            message = SessionEvent(room=room_id, session=to.session, event=event, payload=data)
            self.bus.send_to_node(to.node, message)

    async def close(self, room_id: str, to: SessionRef, reason: str) -> None:
        """Close one connection, wherever it is."""
        if to.node == self.node_id:
            await self.local.close_session(to.session, reason)
        else:
            self.bus.send_to_node(
                to.node, SessionClose(room=room_id, session=to.session, reason=reason)
            )
