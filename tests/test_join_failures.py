"""Failures in the middle of a join leave nothing behind; a participant who left hears nothing."""

from __future__ import annotations

import pytest

from server import appkeys
from server.rooms.errors import Conflict
from server.rooms.room_media import RoomMedia
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def test_a_failed_join_leaves_no_ghost(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await server.create_room()

    async def refuse(*args: object, **kwargs: object) -> None:
        raise Conflict("media_unavailable", "simulated failure while setting up media")

    monkeypatch.setattr(RoomMedia, "add", refuse)
    client = RoomClient(server.base_url, await server.token(room["id"], "m1", "member", "hunan"))
    with pytest.raises(SignalingError) as refused:
        await client.connect()
    assert refused.value.code == "media_unavailable"
    _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
    assert detail["participants"] == []
    namespace = server.app[appkeys.NAMESPACE]
    assert namespace.rooms() == [] and namespace.sessions_in(room["id"]) == []
    await client.close()


async def test_who_left_hears_nothing_more(server: ServerHandle) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    other = await server.client(room["id"], "m2", "member", "zhuzhou")
    leaver = await server.client(room["id"], "m1", "member", "shifeng")
    ack = await leaver.emit_raw("leave", {})
    assert ack["ok"] is True
    await host.wait_for(lambda: "m1" not in host.participants)
    entry = await host.chat("after m1 left")
    await other.wait_for(lambda: any(e.id == entry.id for e in other.timeline))
    assert all(e.id != entry.id for e in leaver.timeline)
    for client in (host, other, leaver):
        await client.close()


async def test_deleting_a_session_closes_its_media_and_everyones_connection(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    member = await server.client(room["id"], "m1", "member", "hunan")
    assert server.media_room(room["id"]) is not None
    assert (await server.request("DELETE", f"/api/rooms/{room['id']}"))[0] == 204
    await member.wait_for(lambda: member.disconnected.is_set())
    assert member.ended is not None and member.ended[0] == "session_ended"
    assert server.media_room(room["id"]) is None
    assert server.app[appkeys.CLUSTER].directory.media_node.rooms == {}
    await member.close()
