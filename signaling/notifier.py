"""SocketNotifier: the domain's RoomNotifier over python-socketio.

Everyone in a consultation room is in the Socket.IO room `room:<id>`; one
connection is addressed by its sid (python-socketio puts each client in a room
of that name). With the Redis manager both reach clients of every process.
"""

from __future__ import annotations

from typing import Any

import socketio

from server.rooms.models import Participant
from signaling.events import NAMESPACE


def room_channel(room_id: str) -> str:
    """The Socket.IO room of everyone in a consultation room."""
    return f"room:{room_id}"


class SocketNotifier:
    """Sends domain events to clients, across server processes."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def broadcast(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to everyone in the room."""
        await self._sio.emit(event, payload, room=room_channel(room_id), namespace=NAMESPACE)

    async def send(self, session: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to one connection (python-socketio's room named after its sid)."""
        await self._sio.emit(event, payload, room=session, namespace=NAMESPACE)

    async def disconnect(self, participant: Participant) -> None:
        """Close that participant's connection, wherever it is."""
        await self._sio.disconnect(participant.session, namespace=NAMESPACE)
