"""The host's tools beyond the floor: a co-host and its limits, mute all, pin, queue order,
extending a turn, renaming — each checked on the server, limited, and in the timeline."""

from __future__ import annotations

import pytest

from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def test_a_cohost_runs_the_floor_but_cannot_end_record_or_remove_the_host(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    # A co-host may sit at a branch venue.
    cohost = await server.client(rid, "co", "cohost", "zhuzhou")
    member = await server.client(rid, "m1", "member", "shifeng")
    await member.raise_hand()
    live = await cohost.grant_floor("m1", time_limit_seconds=60)
    assert live.floor is not None and live.floor.identity == "m1"
    await cohost.extend_floor(60)
    await cohost.revoke_floor()
    await cohost.request_mute("m1")
    await cohost.set_lock(True)
    await cohost.set_lock(False)
    for refused in (
        cohost.end_session(),
        cohost.call("start_recording"),
        cohost.remove("host"),
    ):
        with pytest.raises(SignalingError) as error:
            await refused
        assert error.value.code in ("host_only", "cannot_remove_host")
    # A member can do none of it.
    for event, payload in (
        ("mute_all", {}),
        ("pin", {"identity": "m1"}),
        ("rename_participant", {"identity": "host", "name": "x"}),
        ("extend_floor", {"seconds": 60}),
        ("move_in_queue", {"identity": "m1", "position": 0}),
    ):
        with pytest.raises(SignalingError) as error:
            await member.call(event, payload)
        assert error.value.code == "host_only", event
    # The co-host may remove a member; the host is still there.
    await cohost.remove("m1")
    await member.wait_for(lambda: member.disconnected.is_set())
    assert "host" in cohost.participants
    for client in (host, cohost):
        await client.close()


async def test_mute_all_leaves_the_floor_holder_open(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    speaker = await server.client(rid, "m1", "member", "zhuzhou")
    others = [await server.client(rid, f"m{i}", "member", "shifeng") for i in (2, 3)]
    observer = await server.client(rid, "obs", "observer", "national")
    await host.grant_floor("m1")
    muted = await host.mute_all()
    assert sorted(muted) == ["m2", "m3"]
    for other in others:
        assert await other.wait_for_event("mute_requested") == {"kind": "audio", "by": "host"}
    await host.chat("barrier")
    await speaker.wait_for(lambda: any(e.type == "chat" for e in speaker.timeline))
    await observer.wait_for(lambda: any(e.type == "chat" for e in observer.timeline))
    assert not any(name == "mute_requested" for name, _ in speaker.received)
    assert not any(name == "mute_requested" for name, _ in observer.received)
    entry = next(e for e in host.timeline if e.type == "muted_all")
    assert entry.data == {"by": "host", "count": 2, "except": "m1"}
    for client in (host, speaker, *others, observer):
        await client.close()


async def test_pin_puts_a_venue_in_everyones_spotlight_until_unpinned_or_gone(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    city = await server.client(rid, "m1", "member", "zhuzhou")
    watcher = await server.client(rid, "m2", "member", "shifeng")
    await host.pin("m1")
    await watcher.wait_for(lambda: watcher.live.pinned == "m1")
    with pytest.raises(SignalingError) as error:
        await host.pin("nobody")
    assert error.value.code == "participant_not_found"
    await city.close()
    await watcher.wait_for(lambda: watcher.live.pinned is None)
    types = [e.type for e in watcher.timeline]
    assert "pinned" in types
    for client in (host, watcher):
        await client.close()


async def test_queue_order_set_by_the_host_survives_a_host_reload(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    members = [await server.client(rid, f"m{i}", "member", "shifeng") for i in range(3)]
    for member in members:
        await member.raise_hand()
    live = await host.move_in_queue("m2", 0)
    assert live.queue == ["m2", "m0", "m1"]
    live = await host.move_in_queue("m2", 1)  # down one
    assert live.queue == ["m0", "m2", "m1"]
    live = await host.move_in_queue("m0", 99)  # beyond the end: last
    assert live.queue == ["m2", "m1", "m0"]
    with pytest.raises(SignalingError) as error:
        await host.move_in_queue("host", 0)
    assert error.value.code == "not_in_queue"
    await host.close()
    again = await server.client(rid, "host", "host", "hunan")
    assert again.live.queue == ["m2", "m1", "m0"]
    entry = [e for e in again.timeline if e.type == "queue_reordered"][-1]
    assert entry.data == {"identity": "m0", "position": 2, "by": "host"}
    for client in (again, *members):
        await client.close()


async def test_extending_a_turn_moves_its_deadline_and_its_expiry(server: ServerHandle) -> None:
    # Two rooms: in one the 1-second turn is extended by a minute, in the other not. When
    # the other's turn has expired, the extended one's first deadline has passed as well.
    extended_room = (await server.create_room())["id"]
    plain_room = (await server.create_room())["id"]
    host = await server.client(extended_room, "host", "host", "hunan")
    speaker = await server.client(extended_room, "m1", "member", "zhuzhou")
    other_host = await server.client(plain_room, "host", "host", "hunan")
    await server.client(plain_room, "m1", "member", "zhuzhou")
    granted = await host.grant_floor("m1", time_limit_seconds=1)
    await other_host.grant_floor("m1", time_limit_seconds=1)
    assert granted.floor is not None and granted.floor.deadline is not None
    live = await host.extend_floor(60)
    assert live.floor is not None and live.floor.deadline == granted.floor.deadline + 60_000
    assert live.floor.grant_id == granted.floor.grant_id
    await other_host.wait_for(lambda: other_host.live.floor is None)
    await host.chat("barrier")  # applied after any expiry already due in this room
    assert host.live.floor is not None and host.live.floor.identity == "m1"
    entry = next(e for e in speaker.timeline if e.type == "floor_extended")
    assert entry.data["seconds"] == 60 and entry.data["identity"] == "m1"
    with pytest.raises(SignalingError) as error:
        await host.extend_floor(0)
    assert error.value.code == "invalid_payload"
    await host.revoke_floor()
    await host.grant_floor("m1")
    with pytest.raises(SignalingError) as error:
        await host.extend_floor(60)
    assert error.value.code == "floor_untimed"


async def test_rename_reaches_everyone_survives_a_rejoin_and_is_in_the_timeline(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    renamed = await host.rename("m1", "  株洲市 张委员  ")
    assert renamed.name == "株洲市 张委员"
    await member.wait_for(lambda: member.participants["m1"].name == "株洲市 张委员")
    entry = next(e for e in member.timeline if e.type == "renamed")
    assert entry.data["previous"] == "m1" and entry.data["name"] == "株洲市 张委员"
    for bad in ("", "x" * 65, "a\u0000b"):
        with pytest.raises(SignalingError) as error:
            await host.rename("m1", bad)
        assert error.value.code == "invalid_payload"
    await member.close()
    back = await server.client(rid, "m1", "member", "zhuzhou")
    assert back.you.name == "株洲市 张委员"
    assert host.participants["m1"].name == "株洲市 张委员" or await _eventually_named(host)
    for client in (host, back):
        await client.close()


async def _eventually_named(client: RoomClient) -> bool:
    await client.wait_for(lambda: client.participants["m1"].name == "株洲市 张委员")
    return True


async def test_moderation_is_rate_limited(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    await server.client(rid, "m1", "member", "zhuzhou")
    codes = []
    for i in range(20):
        try:
            await host.pin("m1" if i % 2 == 0 else None)
            codes.append("ok")
        except SignalingError as exc:
            codes.append(exc.code)
    assert "rate_limited" in codes
    assert codes[:10] == ["ok"] * 10
