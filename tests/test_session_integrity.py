"""A socket's life is a state machine, and nothing a client sends can step outside it.

Each test stages a hole seen in the first round (an attacker faking its own
departure to listen invisibly, a ghost left by a disconnect during a join, idle
sockets piling up, old links reviving, limits reset by reconnecting) and shows
it is refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import socketio

from server import appkeys
from server.state.store import RedisStore
from signaling.client import RoomClient, SignalingError
from signaling.events import NAMESPACE
from tests.conftest import free_port
from tests.helpers import ServerHandle, eventually, run_server


def _present(server: ServerHandle, room_id: str) -> dict[str, str]:
    """identity => session of the room's participants, as its owner holds them."""
    room = server.owned_room(room_id)
    return {} if room is None else {i: p.session for i, p in room.participants.items()}


async def test_fake_disconnect_and_connect_events_change_nothing(server: ServerHandle) -> None:
    room = await server.create_room()
    other = await server.create_room(id="other-room")
    host = await server.client(room["id"], "host", "host", "hunan")
    member = await server.client(room["id"], "m1", "member", "zhuzhou")
    other_token = await server.token(other["id"], "m1", "member", "zhuzhou")
    session = member.you.session

    for event, payload in [
        ("disconnect", {}),
        ("disconnect", "io client disconnect"),
        ("connect", {"token": other_token}),
        ("message", {}),
        ("connect_error", {}),
    ]:
        ack = await member.emit_raw(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "unknown_event", (event, ack)

    # Still a visible participant in its own room (the host can act on it), in no other.
    entry = await host.chat("大家好")
    await member.wait_for(lambda: any(e.id == entry.id for e in member.timeline))
    assert _present(server, room["id"]) == {"host": host.you.session, "m1": session}
    assert "m1" in host.participants
    _, detail = await server.request("GET", f"/api/rooms/{other['id']}")
    assert detail["participants"] == []
    # The host can remove it, and then it hears nothing more.
    await host.remove("m1")
    await member.wait_for(lambda: member.disconnected.is_set())
    assert member.ended is not None and member.ended[0] == "removed"
    await host.close()


async def test_one_connection_joins_once_and_cannot_come_back_after_leaving(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    member = await server.client(room["id"], "m1", "member", "zhuzhou")
    ack = await member.emit_raw("join", {})
    assert ack["error"]["code"] == "already_joined"
    assert _present(server, room["id"])["m1"] == member.you.session

    assert (await member.emit_raw("leave", {}))["ok"] is True
    await host.wait_for(lambda: "m1" not in host.participants)
    for event in ("join", "raise_hand", "chat"):
        ack = await member.emit_raw(event, {"text": "x"} if event == "chat" else {})
        assert ack["ok"] is False and ack["error"]["code"] in ("not_connected", "not_joined")
    # A connection that left is closed by the server (it cannot be used again).
    await member.wait_for(lambda: member.disconnected.is_set())
    assert "m1" not in _present(server, room["id"])
    await host.close()


async def test_a_connection_closed_while_joining_leaves_no_ghost(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    # Hold the member's join at the owner (it reads the roster) until its socket is gone.
    entered, release = asyncio.Event(), asyncio.Event()
    read_roster = RedisStore.roster

    async def held_roster(self: RedisStore, room_id: str) -> Any:
        entered.set()
        await release.wait()
        return await read_roster(self, room_id)

    monkeypatch.setattr(RedisStore, "roster", held_roster)
    token = await server.token(room["id"], "m1", "member", "zhuzhou")
    raw = socketio.AsyncClient(reconnection=False)
    await raw.connect(server.base_url, namespaces=[NAMESPACE], auth={"token": token})
    joining = asyncio.create_task(raw.call("join", {}, namespace=NAMESPACE, timeout=10))
    await asyncio.wait_for(entered.wait(), 10)
    await raw.eio.disconnect(abort=True)
    namespace = server.app[appkeys.NAMESPACE]
    await eventually(lambda: len(namespace.connections) == 1, "the server saw the socket close")
    monkeypatch.setattr(RedisStore, "roster", read_roster)
    release.set()
    # The join completed at the owner after the socket closed: it is undone at once.
    await host.wait_for(
        lambda: any(e.type == "left" and e.data["identity"] == "m1" for e in host.timeline)
    )
    assert "m1" not in _present(server, room["id"])
    assert "m1" not in host.participants
    joining.cancel()
    await asyncio.gather(joining, return_exceptions=True)
    await host.close()


async def test_sockets_that_never_join_are_closed(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, join_timeout_seconds=1.0
    ) as server:
        room = await server.create_room()
        joined = await server.client(room["id"], "host", "host", "hunan")
        # Connected to /room with a valid token, but never sends join.
        idle = socketio.AsyncClient(reconnection=False)
        closed = asyncio.Event()
        idle.on("disconnect", lambda *_: closed.set(), namespace=NAMESPACE)
        token = await server.token(room["id"], "m1", "member", "zhuzhou")
        await idle.connect(server.base_url, namespaces=[NAMESPACE], auth={"token": token})
        # An Engine.IO connection that never opens /room at all.
        ws_url = server.base_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
            opened = await ws.receive_str()
            assert opened.startswith("0")  # the Engine.IO open packet
            # It never opens /room; it does answer Engine.IO pings, so only that counts.
            async with asyncio.timeout(15):
                while not ws.closed:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT or message.data == "1":
                        break  # closed: by the websocket, or by an Engine.IO close packet
                    if message.data == "2":
                        await ws.send_str("3")  # answer pings: only the missing /room counts
        await asyncio.wait_for(closed.wait(), 15)
        assert server.app[appkeys.SOCKETIO].connection_count == 1
        # The participant who joined is still there and still works.
        await joined.chat("仍在会场")
        assert not joined.disconnected.is_set()
        await joined.close()


async def test_old_links_die_with_their_session(server: ServerHandle) -> None:
    first = await server.create_room(id="reused")
    old_member = await server.token(first["id"], "m1", "member", "zhuzhou")
    old_host = await server.token(first["id"], "host", "host", "hunan")
    host = RoomClient(server.base_url, old_host)
    await host.connect()
    member = RoomClient(server.base_url, old_member)
    await member.connect()
    await host.remove("m1")
    await member.wait_for(lambda: member.disconnected.is_set())
    await host.close()
    assert (await server.request("DELETE", "/api/rooms/reused"))[0] == 204
    await server.create_room(id="reused")
    for old in (old_member, old_host):
        with pytest.raises(SignalingError) as refused:
            await RoomClient(server.base_url, old).connect()
        assert refused.value.code == "token_invalid"
    # The new session's own links work (and the old removal does not carry over).
    fresh = await server.client("reused", "m1", "member", "zhuzhou")
    assert fresh.you.identity == "m1"
    await fresh.close()


async def test_tokens_last_a_session_day_by_default(server: ServerHandle) -> None:
    room = await server.create_room()
    body = {"identity": "m1", "name": "m1", "role": "member", "venue": "zhuzhou"}
    status, issued = await server.request("POST", f"/api/rooms/{room['id']}/tokens", body)
    assert status == 201
    assert abs(issued["expires_at"] - (time.time() + 12 * 3600)) < 60


async def test_rate_limits_follow_the_identity_across_reconnects(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # A budget that does not refill during the test: the outcome cannot depend on timing.
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, chat_rate=0.001, chat_burst=3
    ) as server:
        room = await server.create_room()
        token = await server.token(room["id"], "m1", "member", "zhuzhou")
        spammer = RoomClient(server.base_url, token)
        await spammer.connect()
        for i in range(3):
            await spammer.chat(f"第{i}条")
        with pytest.raises(SignalingError) as limited:
            await spammer.chat("太多了")
        assert limited.value.code == "rate_limited"
        for _ in range(3):
            # Each new connection (a reconnect, another tab) still has the same budget.
            await spammer.close()
            spammer = RoomClient(server.base_url, token)
            await spammer.connect()
            with pytest.raises(SignalingError) as limited:
                await spammer.chat("换个连接再来")
            assert limited.value.code == "rate_limited"
        # Someone else still chats.
        other = await server.client(room["id"], "m2", "member", "shifeng")
        await other.chat("我还能发言")
        chats = [e for e in other.timeline if e.type == "chat"]
        assert len(chats) == 4
        await other.close()
        await spammer.close()


async def test_a_full_session_refuses_newcomers_but_not_hosts_or_returning_members(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, max_participants=3
    ) as server:
        room = await server.create_room()
        rid = room["id"]
        host = await server.client(rid, "host", "host", "hunan")
        m1 = await server.client(rid, "m1", "member", "zhuzhou")
        m2_token = await server.token(rid, "m2", "member", "shifeng")
        m2 = RoomClient(server.base_url, m2_token)
        await m2.connect()
        with pytest.raises(SignalingError) as full:
            await server.client(rid, "m3", "member", "national")
        assert full.value.code == "room_full"
        # m2 reloads its page: it takes its own place back.
        again = RoomClient(server.base_url, m2_token)
        await again.connect()
        await m2.wait_for(lambda: m2.ended is not None)
        # A second host (co-host) always gets in.
        cohost = await server.client(rid, "cohost", "host", "hunan")
        assert set(_present(server, rid)) == {"host", "m1", "m2", "cohost"}
        for client in (host, m1, again, cohost):
            await client.close()


async def test_connection_cap_refuses_clearly_and_keeps_serving(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, max_connections=2
    ) as server:
        room = await server.create_room()
        first = await server.client(room["id"], "host", "host", "hunan")
        second = await server.client(room["id"], "m1", "member", "zhuzhou")
        polling = f"{server.base_url}/socket.io/?EIO=4&transport=polling"
        async with server.http.get(polling) as response:
            assert response.status == 503
            body = await response.json()
        assert body["error"]["code"] == "server_full"
        with pytest.raises(SignalingError):
            await server.client(room["id"], "m2", "member", "shifeng")
        # Those already in are unaffected; a place freed is a place taken.
        await second.close()
        await eventually(
            lambda: server.app[appkeys.SOCKETIO].connection_count == 1, "m1's socket closed"
        )
        third = await server.client(room["id"], "m2", "member", "shifeng")
        await first.chat("照常进行")
        assert not first.disconnected.is_set()
        await third.close()
        await first.close()
