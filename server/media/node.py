"""The media node: one per process, owning every media room of that process.

When its last room has closed, the node collects the garbage of its sessions
(``MediaConfig.idle_collection_delay`` later, if no room opened meanwhile).
aiortc's objects hold reference cycles, so what a session leaves waits for a
full collection of the garbage collector, and that walks every live object with
the event loop stopped: one that freed a 36-participant session's 96 000
objects took 289 ms on the load test's machine (README, *Pauses of the garbage
collector*). Run while a session is live, it freezes everyone's video at once;
run when no room is open, nobody sees it. (With other rooms open, the garbage
waits for CPython's own thresholds, as before.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

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
        self._idle_collection: asyncio.TimerHandle | None = None
        #: Collections run because the last room had closed (tests, diagnostics).
        self.idle_collections = 0

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
            self._cancel_idle_collection()
            logger.info("room %s created", room_id)
        return room

    def get_room(self, room_id: str) -> MediaRoom | None:
        """The open room with this id, if any (never creates one; never a closed room)."""
        room = self._rooms.get(room_id)
        return None if room is None or room.closed else room

    @property
    def idle_collection_pending(self) -> bool:
        """Whether a collection is scheduled (the last room closed, none opened since)."""
        return self._idle_collection is not None

    async def close(self) -> None:
        """Close every room (idempotent)."""
        self._closed = True
        self._cancel_idle_collection()
        rooms = list(self._rooms.values())
        await asyncio.gather(*(room.close() for room in rooms))
        self._rooms.clear()

    def _forget(self, room: MediaRoom) -> None:
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
        delay = self.config.idle_collection_delay
        if not self._rooms and not self._closed and delay is not None:
            # Called as the room's close starts: the delay lets its connections close.
            self._cancel_idle_collection()
            loop = asyncio.get_running_loop()
            self._idle_collection = loop.call_later(delay, self._collect_while_idle)

    def _cancel_idle_collection(self) -> None:
        if self._idle_collection is not None:
            self._idle_collection.cancel()
            self._idle_collection = None

    def _collect_while_idle(self) -> None:
        self._idle_collection = None
        if self._rooms or self._closed:
            return
        started = time.perf_counter()
        freed = gc.collect()
        self.idle_collections += 1
        logger.info(
            "no room open: collected the closed sessions' garbage (%d objects) in %.0f ms",
            freed,
            1000 * (time.perf_counter() - started),
        )
