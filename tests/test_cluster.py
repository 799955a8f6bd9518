"""Several nodes on one Redis: any node serves any participant; the owner serves the room.

Each room is owned by one node (its actor, its media); sockets on other nodes
reach it over the bus. These tests run real server processes on a Valkey of
their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.client import RoomClient, SignalingError
from tests.cluster_kit import cluster
from tests.session_peer import SessionPeer


def _sees_and_hears(peer: SessionPeer, identity: str, frames: int = 10) -> bool:
    return (
        peer.frames_from(identity, "video") >= frames
        and peer.frames_from(identity, "audio") >= frames
    )


async def test_any_node_serves_any_participant_of_any_room(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3") as c:
        a, b = c.nodes
        room_id = await c.create_room(id="two")
        host = await c.client(a, room_id, "host", "host", "hunan")
        # A link issued by B, used on B: B relays everything to the room's owner (A).
        member = RoomClient(b.base_url, await c.token(room_id, "m1", "member", "shifeng", b))
        await member.connect()
        await host.wait_for(lambda: "m1" in host.participants)
        assert host.participants["m1"].node != host.you.node, "the two are on different nodes"
        assert member.owner is not None and member.owner.id == host.you.node
        assert (await c.detail(room_id, b))["media_node"] == host.you.node

        # B -> owner: a raised hand and a chat message, seen on A.
        await member.raise_hand()
        await host.wait_for(lambda: host.live.queue == ["m1"])
        entry = await member.chat("来自区县会场")
        await host.wait_for(lambda: any(e.id == entry.id for e in host.timeline))
        # Owner -> B: the host gives the floor; m1's mute state travels back.
        await host.grant_floor("m1")
        await member.wait_for(lambda: member.live.floor is not None)
        await member.set_media_state(audio_muted=True, video_muted=False)
        await host.wait_for(lambda: host.participants["m1"].audio_muted)
        # The host on A removes an observer connected to B: the close crosses nodes too.
        observer = await c.client(b, room_id, "o1", "observer", "national")
        await host.wait_for(lambda: "o1" in host.participants)
        await host.remove("o1")
        await observer.wait_for(lambda: observer.disconnected.is_set())
        assert observer.ended is not None and observer.ended[0] == "removed"

        # B dies without a word: its participant goes when B's heartbeat has expired.
        await b.kill()
        await host.wait_for(lambda: "m1" not in host.participants, timeout=15)
        await host.wait_for(lambda: host.live.floor is None)
        await host.wait_for(
            lambda: any(e.type == "left" and e.data["identity"] == "m1" for e in host.timeline)
        )
        left = next(e for e in host.timeline if e.type == "left" and e.data["identity"] == "m1")
        assert left.data["reason"] == "connection_lost"
        await host.close()


async def test_media_of_a_participant_on_another_node_goes_through_the_owner(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3") as c:
        a, b = c.nodes
        room_id = await c.create_room()
        host = await c.peer(a, room_id, "host", "host", "hunan", 1)
        member = await c.peer(b, room_id, "m1", "member", "shifeng", 2)
        try:
            await host.wait_for(lambda: _sees_and_hears(host, "m1"), timeout=20)
            await member.wait_for(lambda: _sees_and_hears(member, "host"), timeout=20)
            counters = [c for r in member.tracks_from("host", "video") for c in r.counters]
            assert counters and all(index == 1 for index, _ in counters)
        finally:
            await member.close()
            await host.close()


async def test_rooms_go_to_the_least_loaded_node_and_a_full_deployment_says_so(
    tmp_path: Path,
) -> None:
    async with cluster(
        tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3", "--max-rooms-per-node", "1"
    ) as c:
        a, b = c.nodes
        rooms = [await c.create_room(id=name) for name in ("first", "second", "third")]
        # Every first join lands on A, as the kernel's SO_REUSEPORT hash may send them.
        first = await c.client(a, rooms[0], "host", "host", "hunan")
        second = await c.client(a, rooms[1], "host", "host", "hunan")
        _, listing = await c.request(b, "GET", "/api/nodes")
        assert first.owner is not None and second.owner is not None
        assert {first.owner.id, second.owner.id} == {n["id"] for n in listing["nodes"]}, (
            "one room on each node"
        )
        # Both nodes hold their one room: the third session cannot start anywhere.
        late = RoomClient(a.base_url, await c.token(rooms[2], "host", "host", "hunan"))
        with pytest.raises(SignalingError) as refused:
            await late.connect()
        assert refused.value.code == "server_full"
        # The first two go on as before.
        entry = await second.chat("第二个会场照常")
        await second.wait_for(lambda: any(e.id == entry.id for e in second.timeline))
        await first.close()
        await second.close()
