"""How the domain reaches connected clients, without knowing about Socket.IO.

The signaling layer implements this protocol; the domain only calls it. Every
method must work across server processes (the room's participants may be
connected to other nodes).
"""

from __future__ import annotations

from typing import Any, Protocol

from server.rooms.models import Participant


class RoomNotifier(Protocol):
    """Outbound events to a room's participants."""

    async def broadcast(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to everyone in the room."""

    async def send(self, session: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to one connection (a participant's `session`)."""

    async def disconnect(self, participant: Participant) -> None:
        """Close the participant's signaling connection (after any event telling them why)."""
