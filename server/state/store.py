"""RedisStore: the single source of truth for rooms, presence, timelines and nodes.

Process memory holds only what cannot leave a process (sockets, peer
connections); everything a second server process needs to know is here. The
key schema is in `server.state.keys`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import WatchError

from server.rooms.models import Invitee, LiveState, Participant, Room, TimelineEntry
from server.state import keys
from server.state.nodes import NodeInfo

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Optimistic transactions give up after this many lost races (only under extreme contention).
MAX_TRANSACTION_ATTEMPTS = 50


class RoomMissing(LookupError):
    """The room's live state is not in Redis (deleted, or never created)."""


class StoreConflict(RuntimeError):
    """An optimistic transaction kept losing races; the caller should report a retryable error."""


def now_ms() -> float:
    """Wall-clock milliseconds since the epoch (scores and deadlines use this unit)."""
    return time.time() * 1000.0


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
        """The underlying client (for health checks and the job queue)."""
        return self._client

    # --- rooms -----------------------------------------------------------------

    async def create_room(self, room: Room) -> bool:
        """Store a new room and its initial live state; False if the id is taken."""
        created = await self._redis.set(keys.room_definition(room.id), _dump(room), nx=True)
        if not created:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.room_live(room.id), _dump(LiveState()))
            pipe.zadd(keys.ROOMS, {room.id: room.created_at.timestamp() * 1000.0})
            await pipe.execute()
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
            pipe.hdel(keys.ROOM_NODE, room_id)
            pipe.zrem(keys.FLOOR_DEADLINES, room_id)
            pipe.srem(keys.ACTIVE_ROOMS, room_id)
            results = await pipe.execute()
        return bool(results[0])

    # --- live state --------------------------------------------------------------

    async def get_live(self, room_id: str) -> LiveState | None:
        """The room's live state, or None if the room does not exist."""
        raw = await self._redis.get(keys.room_live(room_id))
        return LiveState.model_validate_json(raw) if raw else None

    async def update_live(
        self, room_id: str, change: Callable[[LiveState], tuple[LiveState, T]]
    ) -> tuple[LiveState, bool, T]:
        """Apply `change` atomically; returns (state, whether it changed, change's result).

        `change` is a pure function of the current state; it may raise to refuse.
        It may run several times when other writers race us, so it must have no
        side effects. The version is bumped on every real change, and the floor
        deadline index is kept in the same transaction.
        """
        key = keys.room_live(room_id)
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise RoomMissing(room_id)
                    current = LiveState.model_validate_json(raw)
                    proposed, result = change(current)
                    if proposed == current:
                        await pipe.unwatch()
                        return current, False, result
                    updated = proposed.model_copy(update={"version": current.version + 1})
                    pipe.multi()
                    pipe.set(key, _dump(updated))
                    if updated.floor is not None and updated.floor.deadline is not None:
                        pipe.zadd(keys.FLOOR_DEADLINES, {room_id: updated.floor.deadline})
                    else:
                        pipe.zrem(keys.FLOOR_DEADLINES, room_id)
                    await pipe.execute()
                    return updated, True, result
                except WatchError:
                    continue
        raise StoreConflict(f"live state of {room_id!r} is changing too fast")

    async def rooms_with_floor_due(self, at_ms: float) -> list[str]:
        """Rooms whose time-limited floor has run out by `at_ms`."""
        ids = await self._redis.zrangebyscore(keys.FLOOR_DEADLINES, "-inf", at_ms)
        return [i.decode() for i in ids]

    # --- participants and presence ---------------------------------------------------

    async def add_participant(
        self, room_id: str, participant: Participant, deadline: float
    ) -> Participant | None:
        """Record a connection; returns the participant it replaces (same identity), if any.

        Read and write are one transaction, so of two simultaneous joins with the
        same identity the second always sees (and replaces) the first.
        """
        participants_key = keys.room_participants(room_id)
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(participants_key)
                    previous_raw = await pipe.hget(participants_key, participant.identity)
                    pipe.multi()
                    pipe.hset(participants_key, participant.identity, _dump(participant))
                    pipe.zadd(keys.room_presence(room_id), {participant.identity: deadline})
                    pipe.sadd(keys.room_admitted(room_id), participant.identity)
                    pipe.sadd(keys.ACTIVE_ROOMS, room_id)
                    await pipe.execute()
                except WatchError:
                    continue
                return Participant.model_validate_json(previous_raw) if previous_raw else None
        raise StoreConflict(f"participants of {room_id!r} are changing too fast")

    async def remove_participant(
        self, room_id: str, identity: str, session: str | None = None
    ) -> Participant | None:
        """Remove a participant if `session` is still theirs (None: whichever); returns it."""

        def remove(pipe: Any, current: Participant) -> Participant:
            pipe.hdel(keys.room_participants(room_id), identity)
            pipe.zrem(keys.room_presence(room_id), identity)
            return current

        return await self._change_participant(room_id, identity, session, remove)

    async def remove_expired(self, room_id: str, identity: str, at_ms: float) -> Participant | None:
        """Remove a participant whose presence deadline is still past at `at_ms`.

        Someone who rejoined (or whose node heartbeated) since the sweep looked is kept.
        """
        presence_key = keys.room_presence(room_id)
        participants_key = keys.room_participants(room_id)
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(presence_key, participants_key)
                    deadline = await pipe.zscore(presence_key, identity)
                    raw = await pipe.hget(participants_key, identity)
                    if deadline is None or deadline > at_ms:
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.hdel(participants_key, identity)
                    pipe.zrem(presence_key, identity)
                    await pipe.execute()
                except WatchError:
                    continue
                return Participant.model_validate_json(raw) if raw else None
        raise StoreConflict(f"participants of {room_id!r} are changing too fast")

    async def update_participant(
        self, room_id: str, identity: str, session: str, changes: dict[str, Any]
    ) -> Participant | None:
        """Change fields of a connected participant's record; None if it is gone."""

        def update(pipe: Any, current: Participant) -> Participant:
            updated = current.model_copy(update=changes)
            pipe.hset(keys.room_participants(room_id), identity, _dump(updated))
            return updated

        return await self._change_participant(room_id, identity, session, update)

    async def _change_participant(
        self,
        room_id: str,
        identity: str,
        session: str | None,
        write: Callable[[Any, Participant], Participant],
    ) -> Participant | None:
        """Run `write` in a transaction if the participant is there with this session.

        A record whose session differs belongs to a newer connection (a reload)
        and is left alone; None is returned then, as when nobody is there.
        """
        participants_key = keys.room_participants(room_id)
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(participants_key)
                    raw = await pipe.hget(participants_key, identity)
                    current = Participant.model_validate_json(raw) if raw else None
                    if current is None or (session is not None and current.session != session):
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    result = write(pipe, current)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise StoreConflict(f"participants of {room_id!r} are changing too fast")

    async def get_participant(self, room_id: str, identity: str) -> Participant | None:
        """The connected participant with this identity, or None."""
        raw = await self._redis.hget(keys.room_participants(room_id), identity)
        return Participant.model_validate_json(raw) if raw else None

    async def participants(self, room_id: str) -> list[Participant]:
        """Participants whose presence has not expired, in joining order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.room_participants(room_id))
            pipe.zrangebyscore(keys.room_presence(room_id), now_ms(), "+inf")
            raw_map, alive = await pipe.execute()
        alive_ids = {a.decode() for a in alive}
        present = [
            Participant.model_validate_json(raw)
            for identity, raw in raw_map.items()
            if identity.decode() in alive_ids
        ]
        return sorted(present, key=lambda p: p.joined_at)

    async def refresh_presence(self, by_room: dict[str, list[str]], deadline: float) -> None:
        """Push the presence deadline of these participants forward (a node heartbeat)."""
        if not by_room:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id, identities in by_room.items():
                if identities:
                    # XX: never resurrect someone who was removed meanwhile.
                    pipe.zadd(
                        keys.room_presence(room_id), dict.fromkeys(identities, deadline), xx=True
                    )
            await pipe.execute()

    async def expired_presence(self, at_ms: float) -> dict[str, list[str]]:
        """Identities whose presence deadline passed, by room; also retires empty rooms."""
        room_ids = [r.decode() for r in await self._redis.smembers(keys.ACTIVE_ROOMS)]
        expired: dict[str, list[str]] = {}
        for room_id in room_ids:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(keys.room_presence(room_id), "-inf", at_ms)
                pipe.zcard(keys.room_presence(room_id))
                gone, remaining = await pipe.execute()
            if gone:
                expired[room_id] = [g.decode() for g in gone]
            elif remaining == 0:
                await self._retire_if_empty(room_id)
        return expired

    async def _retire_if_empty(self, room_id: str) -> None:
        # Checked and removed in one transaction: a join landing in between keeps its room.
        presence_key = keys.room_presence(room_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(presence_key)
                if await pipe.zcard(presence_key) == 0:
                    pipe.multi()
                    pipe.srem(keys.ACTIVE_ROOMS, room_id)
                    await pipe.execute()
                else:
                    await pipe.unwatch()
            except WatchError:
                pass  # someone joined: the room stays on the sweep's list

    async def is_admitted(self, room_id: str, identity: str) -> bool:
        """Whether this identity has joined the session before (a locked room re-admits them)."""
        return bool(await self._redis.sismember(keys.room_admitted(room_id), identity))

    async def ban(self, room_id: str, identity: str) -> None:
        """Refuse this identity for the rest of the session."""
        await self._redis.sadd(keys.room_banned(room_id), identity)

    async def is_banned(self, room_id: str, identity: str) -> bool:
        """Whether the host removed this identity."""
        return bool(await self._redis.sismember(keys.room_banned(room_id), identity))

    # --- roster ------------------------------------------------------------------

    async def add_invitee(self, room_id: str, invitee: Invitee) -> None:
        """Remember who was invited (a token was issued), for the roster."""
        await self._redis.hset(keys.room_roster(room_id), invitee.identity, _dump(invitee))

    async def roster(self, room_id: str) -> list[Invitee]:
        """Everyone invited to the room, by identity."""
        raw_map = await self._redis.hgetall(keys.room_roster(room_id))
        invitees = [Invitee.model_validate_json(raw) for raw in raw_map.values()]
        return sorted(invitees, key=lambda i: i.identity)

    # --- timeline ----------------------------------------------------------------

    async def append_timeline(
        self, room_id: str, event_type: str, data: dict[str, Any]
    ) -> TimelineEntry:
        """Add an event to the room's timeline stream; returns it with its id and time."""
        entry_id = await self._redis.xadd(
            keys.room_timeline(room_id),
            {"type": event_type, "data": json.dumps(data, ensure_ascii=False)},
            maxlen=keys.TIMELINE_MAXLEN,
            approximate=True,
        )
        return _timeline_entry(
            entry_id, {b"type": event_type.encode(), b"data": json.dumps(data).encode()}
        )

    async def timeline(
        self, room_id: str, count: int = 100, after: str | None = None
    ) -> list[TimelineEntry]:
        """Timeline entries in order: the last `count`, or up to `count` after the id `after`."""
        key = keys.room_timeline(room_id)
        if after is None:
            rows = list(reversed(await self._redis.xrevrange(key, count=count)))
        else:
            rows = await self._redis.xrange(key, min=f"({after}", count=count)
        return [_timeline_entry(entry_id, fields) for entry_id, fields in rows]

    # --- nodes -------------------------------------------------------------------

    async def heartbeat_node(self, node: NodeInfo, ttl_seconds: float) -> None:
        """Announce (or keep announcing) a live node."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.NODES, node.id, _dump(node))
            pipe.set(keys.node_alive(node.id), "1", px=int(ttl_seconds * 1000))
            await pipe.execute()

    async def remove_node(self, node_id: str) -> None:
        """Withdraw a node on clean shutdown and release the rooms pinned to it."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.NODES, node_id)
            pipe.delete(keys.node_alive(node_id))
            await pipe.execute()
        pinned = await self._redis.hgetall(keys.ROOM_NODE)
        for room_id, owner in pinned.items():
            if owner.decode() == node_id:
                await self._redis.hdel(keys.ROOM_NODE, room_id)

    async def is_node_alive(self, node_id: str) -> bool:
        """Whether the node's heartbeat key still exists."""
        return bool(await self._redis.exists(keys.node_alive(node_id)))

    async def live_nodes(self) -> list[NodeInfo]:
        """Nodes whose heartbeat has not expired; prunes the dead ones from the registry."""
        raw_map = await self._redis.hgetall(keys.NODES)
        nodes: list[NodeInfo] = []
        for node_id, raw in raw_map.items():
            if await self.is_node_alive(node_id.decode()):
                nodes.append(NodeInfo.model_validate_json(raw))
            else:
                await self._redis.hdel(keys.NODES, node_id)
        return nodes

    async def pin_room(self, room_id: str, node_id: str) -> str:
        """Pin the room to `node_id` unless a live node already hosts it; returns the host."""
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keys.ROOM_NODE)
                    owner_raw = await pipe.hget(keys.ROOM_NODE, room_id)
                    owner: str | None = owner_raw.decode() if owner_raw else None
                    if owner is not None and (owner == node_id or await self.is_node_alive(owner)):
                        await pipe.unwatch()
                        return owner
                    pipe.multi()
                    pipe.hset(keys.ROOM_NODE, room_id, node_id)
                    await pipe.execute()
                    return node_id
                except WatchError:
                    continue
        raise StoreConflict("room placement is changing too fast")

    async def room_node(self, room_id: str) -> str | None:
        """The node hosting the room's media, if any."""
        raw = await self._redis.hget(keys.ROOM_NODE, room_id)
        return raw.decode() if raw else None


def _timeline_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> TimelineEntry:
    ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return TimelineEntry(
        id=ident,
        ts=float(ident.split("-", 1)[0]),
        type=fields[b"type"].decode(),
        data=json.loads(fields[b"data"]),
    )
