"""RedisStore: typed reads and writes of the Yitang key schema (`server.state.keys`).

Room definitions, rosters, the snapshots and timelines owners write behind,
and the node registry. Writes of a room's live state go through its owner
(`server.state.room_writer`), never through here: this module only reads them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from server.rooms.models import Invitation, Invitee, PersistedRoom, Room, TimelineEntry
from server.state import keys
from server.state.nodes import NodeInfo

logger = logging.getLogger(__name__)


def _dump(model: BaseModel) -> str:
    return model.model_dump_json()


class RedisStore:
    """Typed operations over the Yitang key schema, on one `redis.asyncio` client."""

    def __init__(self, client: aioredis.Redis) -> None:
        # redis-py annotates every reply as a union of all reply types; this class is
        # the typed surface, so the client itself is handled as Any inside it.
        self._redis: Any = client
        self._client = client

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for health checks, leases, writers and the job queue)."""
        return self._client

    # --- rooms -----------------------------------------------------------------

    async def create_room(self, room: Room) -> bool:
        """Store a new room's definition; False if the id is taken."""
        created = await self._redis.set(keys.room_definition(room.id), _dump(room), nx=True)
        if not created:
            return False
        await self._redis.zadd(keys.ROOMS, {room.id: room.created_at.timestamp() * 1000.0})
        return True

    async def get_room(self, room_id: str) -> Room | None:
        """The room's definition, or None."""
        raw = await self._redis.get(keys.room_definition(room_id))
        return Room.model_validate_json(raw) if raw else None

    async def list_rooms(self, limit: int = 1000) -> list[Room]:
        """Rooms, newest first."""
        ids = await self._redis.zrevrange(keys.ROOMS, 0, limit - 1)
        if not ids:
            return []
        raws = await self._redis.mget([keys.room_definition(i.decode()) for i in ids])
        return [Room.model_validate_json(raw) for raw in raws if raw]

    async def delete_room(self, room_id: str) -> bool:
        """Remove the room and all its state; False if it did not exist."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys.room_keys(room_id))
            pipe.zrem(keys.ROOMS, room_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def admission(
        self, room_id: str, identity: str
    ) -> tuple[Room | None, Invitee | None, PersistedRoom | None]:
        """What a token is checked against, in one round trip: the room's definition, the
        roster's entry for `identity` and the last written live state (each None if absent).

        A connect pays these reads before anything else happens; on a busy machine each
        round trip to Redis costs a scheduling delay, so they go in one pipeline.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.room_definition(room_id))
            pipe.hget(keys.room_roster(room_id), identity)
            pipe.get(keys.room_snapshot(room_id))
            definition, invited, snapshot = await pipe.execute()
        return (
            Room.model_validate_json(definition) if definition else None,
            Invitee.model_validate_json(invited) if invited else None,
            PersistedRoom.model_validate_json(snapshot) if snapshot else None,
        )

    # --- live state, as written behind by owners ------------------------------------

    async def snapshot(self, room_id: str) -> PersistedRoom | None:
        """The room's last written live state, or None if nobody has written one yet."""
        raw = await self._redis.get(keys.room_snapshot(room_id))
        return PersistedRoom.model_validate_json(raw) if raw else None

    async def snapshots(self, room_ids: list[str]) -> dict[str, PersistedRoom]:
        """The last written live state of each of these rooms that has one."""
        if not room_ids:
            return {}
        raws = await self._redis.mget([keys.room_snapshot(r) for r in room_ids])
        return {
            room_id: PersistedRoom.model_validate_json(raw)
            for room_id, raw in zip(room_ids, raws, strict=True)
            if raw
        }

    # --- roster ------------------------------------------------------------------

    async def add_invitee(
        self,
        room_id: str,
        invitee: Invitee,
        invitation: Invitation | None = None,
        *,
        replace: bool = False,
    ) -> Invitee | None:
        """Remember who was invited (a token was issued), for the roster, and their link.

        An identity already invited with another role or venue is kept as it is and
        returned (the caller refuses), unless `replace`; one check-and-set, so two
        organizers issuing at once cannot both win.
        """
        clash = await self._redis.eval(
            _ADD_INVITEE,
            2,
            keys.room_roster(room_id),
            keys.room_invitations(room_id),
            invitee.identity,
            _dump(invitee),
            "1" if replace else "0",
            _dump(invitation) if invitation is not None else "",
        )
        return Invitee.model_validate_json(clash) if clash else None

    async def invitee(self, room_id: str, identity: str) -> Invitee | None:
        """The roster's entry for one identity, if it was invited."""
        raw = await self._redis.hget(keys.room_roster(room_id), identity)
        return Invitee.model_validate_json(raw) if raw else None

    async def invitations(self, room_id: str) -> list[Invitation]:
        """The last link issued to each invitee, by identity."""
        raw_map = await self._redis.hgetall(keys.room_invitations(room_id))
        found = [Invitation.model_validate_json(raw) for raw in raw_map.values()]
        return sorted(found, key=lambda i: i.identity)

    async def roster(self, room_id: str) -> list[Invitee]:
        """Everyone invited to the room, by identity."""
        raw_map = await self._redis.hgetall(keys.room_roster(room_id))
        invitees = [Invitee.model_validate_json(raw) for raw in raw_map.values()]
        return sorted(invitees, key=lambda i: i.identity)

    # --- timeline ----------------------------------------------------------------

    async def timeline(
        self, room_id: str, count: int = 100, after: str | None = None
    ) -> list[TimelineEntry]:
        """Timeline entries in order: the last `count`, or up to `count` after the id `after`."""
        key = keys.room_timeline(room_id)
        if after is None:
            rows = list(reversed(await self._redis.xrevrange(key, count=count)))
        else:
            rows = await self._redis.xrange(key, min=f"({after}", count=count)
        return [timeline_entry(entry_id, fields) for entry_id, fields in rows]

    # --- nodes -------------------------------------------------------------------

    async def heartbeat_node(self, node: NodeInfo, ttl_seconds: float) -> None:
        """Announce (or keep announcing) a live node."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.NODES, node.id, _dump(node))
            pipe.set(keys.node_alive(node.id), "1", px=int(ttl_seconds * 1000))
            await pipe.execute()

    async def remove_node(self, node_id: str) -> None:
        """Withdraw a node on clean shutdown."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.NODES, node_id)
            pipe.delete(keys.node_alive(node_id))
            await pipe.execute()

    async def alive(self, node_ids: list[str]) -> dict[str, bool]:
        """Whether each node's heartbeat key still exists."""
        if not node_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.exists(keys.node_alive(node_id))
            found = await pipe.execute()
        return {node_id: bool(n) for node_id, n in zip(node_ids, found, strict=True)}

    async def live_nodes(self) -> list[NodeInfo]:
        """Nodes whose heartbeat has not expired; prunes the dead ones from the registry."""
        raw_map = await self._redis.hgetall(keys.NODES)
        entries = {node_id.decode(): raw for node_id, raw in raw_map.items()}
        alive = await self.alive(list(entries))
        nodes: list[NodeInfo] = []
        for node_id, raw in entries.items():
            if alive[node_id]:
                nodes.append(NodeInfo.model_validate_json(raw))
            else:
                await self._redis.hdel(keys.NODES, node_id)
        return sorted(nodes, key=lambda n: n.id)


# Add an invitee unless the identity is invited with another role or venue (then return
# that invitee's JSON); also keep the link issued, if given.
_ADD_INVITEE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and ARGV[3] ~= '1' then
  local was = cjson.decode(current)
  local now = cjson.decode(ARGV[2])
  if was.role ~= now.role or was.venue ~= now.venue then
    return current
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
return false
"""


def timeline_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> TimelineEntry:
    """A timeline entry from a stream row (id and its `type`/`data` fields)."""
    ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return TimelineEntry(
        id=ident,
        ts=float(ident.split("-", 1)[0]),
        type=fields[b"type"].decode(),
        data=json.loads(fields[b"data"]),
    )
