"""RedisStore against a real Valkey server: atomicity, presence expiry, nodes, timeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis

from server.rooms import floor
from server.rooms.models import Participant, Role, Room, Venue
from server.state import keys
from server.state.nodes import new_node
from server.state.store import RedisStore, now_ms


def _room(room_id: str = "r1") -> Room:
    return Room(
        id=room_id,
        title="t",
        scheduled_start=datetime.now(UTC),
        created_at=datetime.now(UTC),
        venues=[Venue(id="main", name="主会场", level="provincial", main=True)],
    )


def _participant(identity: str, session: str = "s1") -> Participant:
    return Participant(
        identity=identity,
        name=identity,
        role=Role.MEMBER,
        venue="main",
        session=session,
        node="n1",
        joined_at=0,
    )


async def test_concurrent_updates_never_lose_a_change(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    identities = [f"m{i}" for i in range(30)]
    await asyncio.gather(
        *(
            store.update_live("r1", lambda s, i=i: (floor.raise_hand(s, i), None))
            for i in identities
        )
    )
    live = await store.get_live("r1")
    assert live is not None
    assert sorted(live.queue) == sorted(identities)
    assert live.version == 30


async def test_presence_expires_and_is_swept(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    await store.add_participant("r1", _participant("alive"), now_ms() + 60_000)
    await store.add_participant("r1", _participant("dead"), now_ms() - 1)
    assert [p.identity for p in await store.participants("r1")] == ["alive"]
    assert await store.expired_presence(now_ms()) == {"r1": ["dead"]}
    # A refresh never resurrects someone removed meanwhile.
    await store.remove_participant("r1", "dead")
    await store.refresh_presence({"r1": ["dead", "alive"]}, now_ms() + 60_000)
    assert await redis_client.zscore(keys.room_presence("r1"), "dead") is None


async def test_remove_respects_the_current_session(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    await store.add_participant("r1", _participant("m1", session="old"), now_ms() + 60_000)
    replaced = await store.add_participant(
        "r1", _participant("m1", session="new"), now_ms() + 60_000
    )
    assert replaced is not None and replaced.session == "old"
    assert await store.remove_participant("r1", "m1", session="old") is None
    assert (await store.get_participant("r1", "m1")) is not None
    gone = await store.remove_participant("r1", "m1", session="new")
    assert gone is not None and gone.session == "new"


async def test_timeline_is_ordered_and_pages(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    entries = [await store.append_timeline("r1", "chat", {"text": f"第{i}条"}) for i in range(5)]
    assert [e.data["text"] for e in await store.timeline("r1", count=3)] == [
        "第2条",
        "第3条",
        "第4条",
    ]
    after = await store.timeline("r1", count=10, after=entries[1].id)
    assert [e.id for e in after] == [e.id for e in entries[2:]]


async def test_node_heartbeat_expiry_frees_its_rooms(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    first, second = new_node("http://127.0.0.1:1"), new_node("http://127.0.0.1:2")
    await store.heartbeat_node(first, ttl_seconds=0.2)
    await store.heartbeat_node(second, ttl_seconds=60)
    assert await store.pin_room("r1", first.id) == first.id
    assert await store.pin_room("r1", second.id) == first.id, "a live node keeps its room"
    async with asyncio.timeout(5):
        while await store.is_node_alive(first.id):
            await asyncio.sleep(0.05)  # Redis expires the key on its own; poll for it
    assert [n.id for n in await store.live_nodes()] == [second.id]
    assert await store.pin_room("r1", second.id) == second.id, "a dead node's room moves"


async def test_delete_room_removes_every_key(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    await store.add_participant("r1", _participant("m1"), now_ms() + 60_000)
    await store.append_timeline("r1", "joined", {"identity": "m1"})
    assert await store.delete_room("r1")
    leftover = [k async for k in redis_client.scan_iter(match=f"{keys.PREFIX}:room:r1:*")]
    assert leftover == []
    assert not await store.delete_room("r1")


async def test_expiry_sweep_keeps_someone_who_came_back(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    await store.add_participant("r1", _participant("m1", session="old"), now_ms() - 1)
    swept_at = now_ms()
    assert await store.expired_presence(swept_at) == {"r1": ["m1"]}
    # Between the sweep's look and its removal, m1 rejoins.
    await store.add_participant("r1", _participant("m1", session="new"), now_ms() + 60_000)
    assert await store.remove_expired("r1", "m1", swept_at) is None
    current = await store.get_participant("r1", "m1")
    assert current is not None and current.session == "new"


async def test_simultaneous_joins_of_one_identity_see_each_other(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisStore(redis_client)
    await store.create_room(_room())
    replaced = await asyncio.gather(
        *(
            store.add_participant("r1", _participant("m1", session=f"s{i}"), now_ms() + 60_000)
            for i in range(10)
        )
    )
    # Every join but the first replaced exactly one earlier connection, each a different one.
    seen = [r.session for r in replaced if r is not None]
    assert len(seen) == 9
    assert len(set(seen)) == 9
