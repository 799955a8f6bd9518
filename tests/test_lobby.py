"""The lobby: newcomers of a lobby room (or a locked session) wait, connected, until a host
or co-host admits them; hosts see who waits; the socket state machine keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import appkeys
from server.rooms import lobby
from signaling.client import RoomClient, SignalingError
from tests.cluster_kit import cluster
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server


async def _waiting(server: ServerHandle, room_id: str, identity: str, venue: str) -> RoomClient:
    client = RoomClient(
        server.base_url,
        await server.token(room_id, identity, "member", venue, name=f"{identity}名"),
    )
    with pytest.raises(SignalingError) as refused:
        await client.connect()
    assert refused.value.code == "in_lobby"
    return client


async def test_a_newcomer_waits_connected_and_enters_when_admitted(server: ServerHandle) -> None:
    room = await server.create_room(lobby=True)
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    guest = await _waiting(server, rid, "m1", "zhuzhou")
    # The host sees who waits, with name and venue.
    lobby = await host.wait_for_event("lobby")
    assert [(w["identity"], w["name"], w["venue"]) for w in lobby["waiting"]] == [
        ("m1", "m1名", "zhuzhou")
    ]
    # Waiting is not joined: no room events, no commands.
    with pytest.raises(SignalingError) as refused:
        await guest.call("raise_hand")
    assert refused.value.code == "not_joined"
    assert await host.admit("m1") == ["m1"]
    snapshot = await guest.enter_when_admitted()
    assert snapshot.you.identity == "m1"
    await host.wait_for(lambda: "m1" in host.participants)
    entry = next(e for e in host.timeline if e.type == "admitted")
    assert entry.data["identity"] == "m1" and entry.data["by"] == "host"
    # Let in once, let in for good: a reload goes straight in.
    await guest.close()
    again = await server.client(rid, "m1", "member", "zhuzhou")
    for client in (host, again):
        await client.close()


async def test_deny_closes_the_waiting_connection(server: ServerHandle) -> None:
    room = await server.create_room(lobby=True)
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    first = await _waiting(server, rid, "m1", "zhuzhou")
    second = await _waiting(server, rid, "m2", "shifeng")
    await host.wait_for(
        lambda: any(e == "lobby" and len(p["waiting"]) == 2 for e, p in host.received)
    )
    assert await host.deny("m1", "m2") == ["m1", "m2"]
    for client in (first, second):
        with pytest.raises(SignalingError) as closed:
            await client.enter_when_admitted()
        assert closed.value.code == "denied"
        await client.wait_for(lambda c=client: c.disconnected.is_set())
    with pytest.raises(SignalingError) as refused:
        await host.admit("m1")
    assert refused.value.code == "not_waiting"
    await host.close()


async def test_a_locked_session_puts_newcomers_in_the_lobby(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    early = await server.client(rid, "m1", "member", "zhuzhou")
    await host.set_lock(True)
    late = await _waiting(server, rid, "m2", "shifeng")
    # A co-host joins a locked session at once and may admit.
    cohost = await server.client(rid, "co", "cohost", "national")
    assert [w.identity for w in cohost.snapshot.lobby] == ["m2"]
    await cohost.admit("m2")
    await late.enter_when_admitted()
    # Who joined before comes back without waiting.
    await early.close()
    back = await server.client(rid, "m1", "member", "zhuzhou")
    for client in (host, late, cohost, back):
        await client.close()


async def test_a_member_cannot_admit_and_the_lobby_survives_a_host_reload(
    server: ServerHandle,
) -> None:
    room = await server.create_room(lobby=True)
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    await host.set_lock(False)
    member_token = await server.token(rid, "m0", "member", "national")
    await host.set_lock(True)
    waiting = await _waiting(server, rid, "m1", "zhuzhou")
    await host.close()
    # The host comes back (a reload): the person still waits, and the new snapshot says so.
    host = await server.client(rid, "host", "host", "hunan")
    assert [w.identity for w in host.snapshot.lobby] == ["m1"]
    await host.admit("m1")
    member = await waiting.enter_when_admitted()
    assert member.you.identity == "m1"
    other = RoomClient(server.base_url, member_token)
    with pytest.raises(SignalingError):
        await other.connect()
    await host.admit("m0")
    await other.enter_when_admitted()
    with pytest.raises(SignalingError) as refused:
        await other.call("admit", {"identities": ["m1"]})
    assert refused.value.code == "host_only"
    for client in (host, waiting, other):
        await client.close()


async def test_a_waiting_socket_outlives_the_join_timeout_but_not_its_lobby_bound(
    redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, join_timeout_seconds=0.5
    ) as server:
        room = await server.create_room(lobby=True)
        rid = room["id"]
        host = await server.client(rid, "host", "host", "hunan")
        namespace = server.app[appkeys.NAMESPACE]
        waiting = await _waiting(server, rid, "m1", "zhuzhou")
        # Two join timeouts later the waiting connection is still open and still listed.
        quiet = await _waiting(server, rid, "m2", "shifeng")
        await quiet.close()
        await host.wait_for(
            lambda: any(
                e == "lobby" and [w["identity"] for w in p["waiting"]] == ["m1"]
                for e, p in host.received
            )
        )
        idle = RoomClient(server.base_url, await server.token(rid, "m3", "member", "national"))
        await idle._sio.connect(  # connected, never joins: closed by the join timeout
            server.base_url,
            namespaces=["/room"],
            auth={"token": idle.token},
            transports=["websocket"],
        )
        await idle.wait_for(lambda: idle.disconnected.is_set())
        assert not waiting.disconnected.is_set()
        # Its own bound: it is told and closed; the host's list empties.
        namespace.lobby_wait_seconds = 0.2
        token = await server.token(rid, "m4", "member", "national")
        bounded = RoomClient(server.base_url, token)
        with pytest.raises(SignalingError):
            await bounded.connect()
        with pytest.raises(SignalingError) as closed:
            await bounded.enter_when_admitted()
        assert closed.value.code == "timeout"
        await host.wait_for(lambda: _last_lobby(host) == ["m1"] and _lobby_had(host, "m4"))
        for client in (host, waiting):
            await client.close()


def _lobbies(client: RoomClient) -> list[list[str]]:
    return [[w["identity"] for w in p["waiting"]] for e, p in client.received if e == "lobby"]


def _last_lobby(client: RoomClient) -> list[str] | None:
    lobbies = _lobbies(client)
    return lobbies[-1] if lobbies else None


def _lobby_had(client: RoomClient, identity: str) -> bool:
    return any(identity in lobby for lobby in _lobbies(client))


async def test_the_lobby_is_bounded(server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lobby, "MAX_LOBBY_SIZE", 2)
    room = await server.create_room(lobby=True)
    rid = room["id"]
    waiting = [await _waiting(server, rid, f"m{i}", "zhuzhou") for i in range(2)]
    client = RoomClient(server.base_url, await server.token(rid, "m9", "member", "zhuzhou"))
    with pytest.raises(SignalingError) as refused:
        await client.connect()
    assert refused.value.code == "lobby_full"
    for w in waiting:
        await w.close()


async def test_waiting_on_another_node_admission_crosses_and_a_dead_node_empties_its_lobby(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3") as c:
        a, b = c.nodes
        room_id = await c.create_room(id="lobby-two", lobby=True)
        host = await c.client(a, room_id, "host", "host", "hunan")
        # Waiting on B, the room owned by A: admission travels over the bus.
        first = RoomClient(b.base_url, await c.token(room_id, "m1", "member", "shifeng", b))
        with pytest.raises(SignalingError) as refused:
            await first.connect()
        assert refused.value.code == "in_lobby"
        await host.wait_for(lambda: _last_lobby(host) == ["m1"])
        await host.admit("m1")
        joined = await first.enter_when_admitted()
        assert joined.owner is not None and joined.owner.id == host.you.node
        # Another waits on B, and B dies: the host's lobby list forgets them.
        second = RoomClient(b.base_url, await c.token(room_id, "m2", "member", "zhuzhou", b))
        with pytest.raises(SignalingError):
            await second.connect()
        await host.wait_for(lambda: _last_lobby(host) == ["m2"])
        await b.kill()
        await host.wait_for(lambda: _last_lobby(host) == [], timeout=15)
        await host.close()
