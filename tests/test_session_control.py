"""Host controls over the whole session: lock, remove, mute request, end; reloads."""

from __future__ import annotations

import pytest

from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def test_lock_keeps_newcomers_waiting_but_lets_admitted_back(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    early = await server.client(rid, "m1", "member", "zhuzhou")
    await host.set_lock(True)
    await early.wait_for(lambda: early.live.locked)
    late_token = await server.token(rid, "m2", "member", "shifeng")
    waiting = RoomClient(server.base_url, late_token)
    with pytest.raises(SignalingError) as refused:
        await waiting.connect()
    # Not a dead end any more: the newcomer waits in the lobby (see test_lobby.py).
    assert refused.value.code == "in_lobby"
    await waiting.close()
    await early.close()
    back = await server.client(rid, "m1", "member", "zhuzhou")
    assert back.live.locked
    await host.set_lock(False)
    late = RoomClient(server.base_url, late_token)
    await late.connect()
    for client in (host, back, late):
        await client.close()


async def test_removed_participant_is_told_disconnected_and_kept_out(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    other = await server.client(rid, "m2", "member", "national")
    await member.raise_hand()
    await host.remove("m1", reason="离题")
    await member.wait_for(lambda: member.disconnected.is_set())
    assert member.ended is not None and member.ended[0] == "removed"
    assert member.ended[1]["reason"] == "离题"
    await other.wait_for(lambda: "m1" not in other.participants and other.live.queue == [])
    with pytest.raises(SignalingError) as refused:
        await server.client(rid, "m1", "member", "zhuzhou")
    assert refused.value.code == "removed"
    for client in (host, other):
        await client.close()


async def test_mute_request_reaches_only_its_target(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    target = await server.client(rid, "m1", "member", "zhuzhou")
    bystander = await server.client(rid, "m2", "member", "national")
    await host.request_mute("m1", "video")
    request = await target.wait_for_event("mute_requested")
    assert request == {"kind": "video", "by": "host"}
    await host.chat("barrier")  # everything sent before this has been delivered
    await bystander.wait_for(lambda: any(e.type == "chat" for e in bystander.timeline))
    assert not any(name == "mute_requested" for name, _ in bystander.received)
    for client in (host, target, bystander):
        await client.close()


async def test_end_session_disconnects_everyone_and_refuses_rejoin(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    members = [await server.client(rid, f"m{i}", "member", "shifeng") for i in range(3)]
    await host.end_session()
    for member in members:
        await member.wait_for(lambda m=member: m.disconnected.is_set())
        assert member.ended is not None and member.ended[0] == "session_ended"
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert detail["live"]["status"] == "ended"
    assert detail["participants"] == []
    with pytest.raises(SignalingError) as refused:
        await server.client(rid, "m0", "member", "shifeng")
    assert refused.value.code == "session_ended"
    await host.close()


async def test_reload_replaces_the_old_connection(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    token = await server.token(rid, "m1", "member", "zhuzhou")
    host = await server.client(rid, "host", "host", "hunan")
    first = RoomClient(server.base_url, token)
    await first.connect()
    await first.raise_hand()
    second = RoomClient(server.base_url, token)
    await second.connect()
    await first.wait_for(lambda: first.disconnected.is_set())
    assert first.ended is not None and first.ended[0] == "replaced"
    assert second.live.queue == ["m1"], "a reload keeps one's place in the queue"
    await host.wait_for(lambda: host.participants.get("m1") is not None)
    assert host.participants["m1"].session == second.you.session
    # The old connection's disconnect must not remove the new one.
    await host.chat("barrier")
    await second.wait_for(lambda: any(e.type == "chat" for e in second.timeline))
    assert "m1" in host.participants
    for client in (host, second):
        await client.close()


async def test_dropped_connection_is_reported_as_lost(server: ServerHandle) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    member = await server.client(room["id"], "m1", "member", "zhuzhou")
    await member.drop()
    # Held for the reconnect grace period (tests/test_reconnection.py: then a leave).
    await host.wait_for(
        lambda: (
            "m1" in host.participants and host.participants["m1"].reconnecting == "connection_lost"
        )
    )
    await host.close()
