"""The media node: one per process, owning every media room of that process."""

from __future__ import annotations

import asyncio
import logging

from .config import MediaConfig
from .errors import MediaError
from .events import EventCallback
from .room import MediaRoom

logger = logging.getLogger(__name__)

_MAX_ROOM_ID = 128


class MediaNode:
    """Creates and closes media rooms; ``await node.close()`` closes everything."""

    def __init__(self, config: MediaConfig | None = None) -> None:
        self.config = config or MediaConfig()
        self._rooms: dict[str, MediaRoom] = {}
        self._closed = False

    @property
    def rooms(self) -> dict[str, MediaRoom]:
        """Open rooms by id (a copy); a room leaves it as soon as its ``close()`` starts."""
        return dict(self._rooms)

    def room(self, room_id: str, on_event: EventCallback | None = None) -> MediaRoom:
        """Get or create a room. ``on_event`` is used only when the room is created.

        This is get-or-create: after ``room.close()``, calling it again with the
        same id creates a new, empty room (with this ``on_event``). To look a
        room up without creating one, use :meth:`get_room`. A room is never
        closed implicitly: when ``room.empty`` the owner decides whether to
        ``await room.close()``.
        """
        if self._closed:
            raise MediaError("closed", "the media node is closed")
        if not isinstance(room_id, str) or not 0 < len(room_id) <= _MAX_ROOM_ID:
            raise ValueError(f"room ids are 1-{_MAX_ROOM_ID} characters")
        room = self._rooms.get(room_id)
        if room is None or room.closed:
            room = MediaRoom(room_id, self.config, on_event=on_event, on_closed=self._forget)
            self._rooms[room_id] = room
            logger.info("room %s created", room_id)
        return room

    def get_room(self, room_id: str) -> MediaRoom | None:
        """The open room with this id, if any (never creates one; never a closed room)."""
        room = self._rooms.get(room_id)
        return None if room is None or room.closed else room

    async def close(self) -> None:
        """Close every room (idempotent)."""
        self._closed = True
        rooms = list(self._rooms.values())
        await asyncio.gather(*(room.close() for room in rooms))
        self._rooms.clear()

    def _forget(self, room: MediaRoom) -> None:
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
