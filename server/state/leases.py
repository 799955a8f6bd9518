"""Room leases: which node owns a room, with Redis as the arbiter.

A node takes a room with `SET NX PX` and renews all its leases with its
heartbeat; a lease that was not renewed (the node died, or lost Redis for
longer than the lease) expires and the next node that needs the room takes it.
Every write of a room's live state checks the lease in the same script (a
fenced write), so a node that lost its lease can never overwrite its
successor's state.
"""

from __future__ import annotations

import enum
from typing import Any

import redis.asyncio as aioredis

from server.state import keys

# KEYS: leases; ARGV: node, ttl ms. Per key: 1 renewed, 2 taken again (it had expired
# while we could not reach Redis, and nobody else took it), 0 lost (another node holds it).
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  elseif not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: lease; ARGV: node. Deletes the lease only if the node holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Renewal(enum.Enum):
    """What renewing a lease found."""

    RENEWED = 1
    RETAKEN = 2
    LOST = 0


class RoomLeases:
    """Take, renew, release and look up room leases."""

    def __init__(self, client: aioredis.Redis, node_id: str, ttl_seconds: float) -> None:
        self._redis: Any = client
        self.node_id = node_id
        self.ttl_ms = int(ttl_seconds * 1000)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self, room_id: str) -> bool:
        """Take the room if nobody holds it; True if this node holds it now."""
        taken = await self._redis.set(
            keys.room_lease(room_id), self.node_id, nx=True, px=self.ttl_ms
        )
        if taken:
            return True
        return await self.holder(room_id) == self.node_id

    async def holder(self, room_id: str) -> str | None:
        """The node holding the room, if any."""
        raw = await self._redis.get(keys.room_lease(room_id))
        return raw.decode() if raw else None

    async def holders(self, room_ids: list[str]) -> dict[str, str | None]:
        """The node holding each of these rooms (None: nobody)."""
        if not room_ids:
            return {}
        raws = await self._redis.mget([keys.room_lease(r) for r in room_ids])
        return {
            room_id: raw.decode() if raw else None
            for room_id, raw in zip(room_ids, raws, strict=True)
        }

    async def renew(self, room_ids: list[str]) -> dict[str, Renewal]:
        """Renew this node's leases on these rooms (one round trip)."""
        if not room_ids:
            return {}
        results = await self._renew(
            keys=[keys.room_lease(r) for r in room_ids], args=[self.node_id, self.ttl_ms]
        )
        return {
            room_id: Renewal(int(result)) for room_id, result in zip(room_ids, results, strict=True)
        }

    async def release(self, room_id: str) -> None:
        """Give the room up (hand-over, deletion, idle), if this node still holds it."""
        await self._release(keys=[keys.room_lease(room_id)], args=[self.node_id])
