"""Where a room's live broadcast is, for every node: published in Redis by its owner.

The owner's :class:`~server.broadcast.service.BroadcastService` writes a small
record next to the room's lease (``keys.room_broadcast``): the owner node's id
and URL, the directory its worker writes to, and an ``origin`` tag — a random
value also written into that directory as ``.origin``. The record lives
``ttl`` seconds and is renewed every few passes, so an owner that dies stops
being named within the TTL; it is withdrawn when the broadcast stops.

Another node reading the record serves the files from the directory itself
when it is a node directory under its own data directory's ``broadcast`` and
holds the same ``origin`` tag (the same box and data directory: ``yitang serve
--workers N``); otherwise it relays the request to the owner's URL
(``relay.py``). The tag keeps a node on another box whose data directory
happens to have the same path from serving stale or foreign files; the
directory rule keeps any record from pointing a node at other paths.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis import asyncio as aioredis

from server.state import keys

logger = logging.getLogger(__name__)

#: The published record lives this long unless renewed (seconds).
RECORD_TTL = 10.0
#: A node reading records keeps each this long (seconds): one Redis read per room per
#: second at most, however many viewers ask.
READ_CACHE_SECONDS = 1.0
#: The file in a broadcast's directory holding its origin tag.
ORIGIN_FILE = ".origin"

# Delete the record only if it is still the one this node wrote (a new owner's stays).
_WITHDRAW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BroadcastLocation(BaseModel):
    """Where one room's broadcast is being written and served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    url: str
    directory: str
    origin: str

    def local_directory(self, room_id: str, shared_root: Path) -> Path | None:
        """The broadcast's directory if this node may read it itself: a directory of a node
        sharing this node's data directory (``shared_root`` is its ``broadcast``; nothing
        outside it is read whatever a record says) that holds the record's origin tag."""
        directory = Path(self.directory)
        if (
            ".." in directory.parts
            or directory.name != room_id
            or directory.parent.parent != shared_root
        ):
            return None
        try:
            tag = (directory / ORIGIN_FILE).read_text()
        except OSError:
            return None
        return directory if secrets.compare_digest(tag, self.origin) else None


def new_origin() -> str:
    """A fresh origin tag for a broadcast."""
    return secrets.token_hex(12)


def write_origin(directory: Path, origin: str) -> None:
    """Mark a broadcast's directory as the one `origin` names."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ORIGIN_FILE).write_text(origin)


class BroadcastLocator:
    """Publishes this node's broadcasts and finds other nodes' ones."""

    def __init__(self, client: aioredis.Redis, ttl: float = RECORD_TTL) -> None:
        self._redis: Any = client
        self.ttl = ttl
        self._cache: dict[str, tuple[float, BroadcastLocation | None]] = {}

    async def publish(self, room_id: str, location: BroadcastLocation) -> None:
        """Name (or keep naming) `location` as the room's broadcast for `ttl` seconds."""
        await self._redis.set(
            keys.room_broadcast(room_id), location.model_dump_json(), px=int(self.ttl * 1000)
        )

    async def withdraw(self, room_id: str, location: BroadcastLocation) -> None:
        """The broadcast stopped here: remove the record if it is still this one."""
        with contextlib.suppress(Exception):  # Redis away: the record expires by itself
            await self._redis.eval(
                _WITHDRAW, 1, keys.room_broadcast(room_id), location.model_dump_json()
            )

    async def find(self, room_id: str) -> BroadcastLocation | None:
        """The room's broadcast as last published (None: nobody broadcasts it now)."""
        now = time.monotonic()
        cached = self._cache.get(room_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        raw = await self._redis.get(keys.room_broadcast(room_id))
        location: BroadcastLocation | None = None
        if raw is not None:
            try:
                location = BroadcastLocation.model_validate_json(raw)
            except ValueError:
                logger.warning("room %s: unreadable broadcast record", room_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[room_id] = (now + READ_CACHE_SECONDS, location)
        return location
