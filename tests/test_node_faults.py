"""Faults are features: Redis going away, a room's owner killed, a node drained.

Real server processes with their default timings (heartbeat 2 s, lease 6 s),
a Valkey of the test's own, and real aiortc participants that reconnect by
themselves as the browser does.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from signaling.client import RoomClient, SignalingError
from tests.cluster_kit import Cluster, cluster
from tests.helpers import ROOM_SPEC
from tests.session_peer import SessionPeer

#: The issue's bound: everyone back, with media, this long after the owner died.
RECOVERY_SECONDS = 20.0


#: Received frames per (receiver, sender, kind), counting ended tracks too.
FrameCounts = dict[tuple[str, str, str], int]


def _frames_so_far(peers: dict[str, SessionPeer]) -> FrameCounts:
    """Every frame each peer has decoded from each other (`SessionPeer.frames_ever`): taken
    just after a node went away, a baseline that only media set up since can raise."""
    return {
        (identity, other, kind): peer.frames_ever(other, kind)
        for identity, peer in peers.items()
        for other in peers
        for kind in ("audio", "video")
    }


def _sees_and_hears_everyone(
    peer: SessionPeer, identity: str, others: list[str], since: FrameCounts, frames: int = 20
) -> bool:
    def received(other: str, kind: str) -> int:
        return peer.frames_ever(other, kind) - since.get((identity, other, kind), 0)

    return all(
        peer.frames_from(other, "video") > 0
        and peer.frames_from(other, "audio") > 0
        and received(other, "video") >= frames
        and received(other, "audio") >= frames
        for other in others
    )


async def _media_everywhere(
    peers: dict[str, SessionPeer], within: float, since: FrameCounts | None = None
) -> None:
    """Wait until every peer decodes video and audio from every other: at least 20 frames
    of each on live tracks, and (with `since`, a `_frames_so_far` baseline) 20 frames
    more than then, so media from before a failure does not count."""

    async def each(identity: str, peer: SessionPeer) -> None:
        others = [other for other in peers if other != identity]
        await peer.wait_for(
            lambda: _sees_and_hears_everyone(peer, identity, others, since or {}),
            timeout=within,
        )

    try:
        await asyncio.gather(*(each(identity, peer) for identity, peer in peers.items()))
    except TimeoutError:
        seen = {
            identity: {
                other: (peer.frames_from(other, "video"), peer.frames_from(other, "audio"))
                for other in peers
                if other != identity
            }
            for identity, peer in peers.items()
        }
        for identity, peer in peers.items():
            print(
                identity,
                "restarts",
                peer.media_restarts,
                "owner",
                peer.media_owner,
                "sub",
                peer.subscribe_pc and peer.subscribe_pc.connectionState,
                "pub",
                peer.publish_pc and peer.publish_pc.connectionState,
                [(r.identity, r.kind, r.frames, r.ended) for r in peer.received],
                peer.mids,
            )
        raise AssertionError(f"media not everywhere within {within:.0f} s: {seen}") from None


async def _peers(c: Cluster, room_id: str) -> dict[str, SessionPeer]:
    a, b = c.nodes
    # The host joins first, through A: A owns the room.
    return {
        "host": await c.peer(a, room_id, "host", "host", "hunan", 1),
        "m1": await c.peer(b, room_id, "m1", "member", "shifeng", 2),
        "m2": await c.peer(a, room_id, "m2", "member", "zhuzhou", 3),
    }


async def test_redis_stopped_12_s_evicts_nobody_and_loses_nothing_acked(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2) as c:
        a, b = c.nodes
        room_id = await c.create_room()
        host = await c.client(a, room_id, "host", "host", "hunan")
        local = await c.client(a, room_id, "m2", "member", "zhuzhou")
        remote = await c.client(b, room_id, "m1", "member", "shifeng")
        clients = [host, local, remote]
        await host.wait_for(lambda: {"m1", "m2"} <= set(host.participants))

        acked: list[str] = []
        refused: list[str] = []
        await c.valkey.stop()
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()

        async def chat_while_redis_is_down(client: RoomClient) -> None:
            round_ = 0
            while loop.time() - stopped_at < 12.0:
                round_ += 1
                text = f"{client.you.identity} #{round_}"
                try:
                    await client.chat(text)
                    acked.append(text)
                except SignalingError as exc:
                    # Not applied, and said so: fine. (Only the owner's node can still
                    # apply anything while the nodes cannot reach each other.)
                    assert exc.code in ("unavailable", "timeout", "expired"), exc
                    refused.append(text)
                await asyncio.sleep(1.0)  # the chat budget is one message a second

        await asyncio.gather(*(chat_while_redis_is_down(client) for client in clients))
        await c.valkey.start()
        assert any(t.startswith("host") for t in acked), "the owner's node kept the session"

        # B's member reaches the owner again once Redis is back.
        async with asyncio.timeout(30):
            while True:
                try:
                    await remote.chat("恢复后的发言")
                    break
                except SignalingError:
                    await asyncio.sleep(0.5)  # retrying as a user would
        acked.append("恢复后的发言")

        # Nobody was evicted or disconnected, on either node.
        for client in clients:
            assert not client.disconnected.is_set(), client.you.identity
            left = [p for e, p in client.received if e == "participant_left"]
            assert left == [], (client.you.identity, left)
        detail = await c.detail(room_id, b)
        assert {p["identity"] for p in detail["participants"]} == {"host", "m1", "m2"}
        # Nothing acknowledged was lost: every acked chat is in the stored timeline.
        fresh = await c.client(b, room_id, "m3", "member", "national")
        stored = {str(e.data.get("text")) for e in fresh.timeline if e.type == "chat"}
        assert set(acked) <= stored, set(acked) - stored
        print(f"acked {len(acked)} chats, {len(refused)} refused while Redis was down")
        for client in [*clients, fresh]:
            await client.close()


async def test_killing_a_rooms_owner_brings_everyone_back_with_media(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2) as c:
        a, b = c.nodes
        room_id = await c.create_room()
        peers = await _peers(c, room_id)
        try:
            await _media_everywhere(peers, within=30)
            owner = (await c.detail(room_id, b))["media_node"]
            assert owner == peers["host"].signaling.you.node
            before = {identity: peer.media_restarts for identity, peer in peers.items()}
            killed_at = time.monotonic()
            await a.kill()
            since = _frames_so_far(peers)
            await asyncio.gather(
                *(
                    peer.wait_for(
                        lambda p=peer, i=identity: p.media_restarts > before[i],
                        timeout=RECOVERY_SECONDS,
                    )
                    for identity, peer in peers.items()
                )
            )
            await _media_everywhere(
                peers, within=RECOVERY_SECONDS - (time.monotonic() - killed_at), since=since
            )
            elapsed = time.monotonic() - killed_at
            print(f"everyone back with media {elapsed:.1f} s after the owner was killed")
            assert elapsed <= RECOVERY_SECONDS
            detail = await c.detail(room_id, b)
            assert detail["media_node"] != owner
            assert {p["identity"] for p in detail["participants"]} == set(peers)
        finally:
            for peer in peers.values():
                await peer.close()


async def test_sigterm_hands_rooms_over_and_the_node_exits_promptly(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2) as c:
        a, b = c.nodes
        room_id = await c.create_room()
        peers = await _peers(c, room_id)
        watcher = await c.client(b, room_id, "o1", "observer", "national")
        try:
            await _media_everywhere(peers, within=30)
            drained_at = time.monotonic()
            assert await a.stop() == 0
            since = _frames_so_far(peers)
            took = time.monotonic() - drained_at
            print(f"node drained and exited in {took:.1f} s")
            assert took < 15  # --drain-seconds 10, plus shutting down
            await _media_everywhere(peers, within=RECOVERY_SECONDS, since=since)
            # Handed over, not gone: nobody saw anyone leave.
            left = [p for e, p in watcher.received if e == "participant_left"]
            assert left == []
            detail = await c.detail(room_id, b)
            assert {p["identity"] for p in detail["participants"]} == {*peers, "o1"}
            assert all(p["node"] == detail["media_node"] for p in detail["participants"])
        finally:
            for peer in peers.values():
                await peer.close()
            await watcher.close()


async def test_a_recording_resumes_on_the_new_owner_and_the_gap_is_recorded(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 2) as c:
        a, b = c.nodes
        room_id = await c.create_room(auto_record=True)
        host = await c.peer(a, room_id, "host", "host", "hunan", 1)
        member = await c.peer(b, room_id, "m1", "member", "shifeng", 2)
        peers = {"host": host, "m1": member}
        try:
            await _media_everywhere(peers, within=30)
            await host.wait_for(lambda: host.signaling.live.recording)
            started = next(e for e in host.signaling.timeline if e.type == "recording_started")
            recording_id = started.data["recording_id"]
            # A few seconds of everyone in the first part (the writer flushes every second).
            before = host.frames_from("m1", "video")
            await host.wait_for(lambda: host.frames_from("m1", "video") >= before + 90)
            await a.kill()
            since = _frames_so_far(peers)
            # The member (on B) is told the recording goes on, in a new part, on the new owner.
            await member.wait_for(
                lambda: any(
                    e.type == "recording_resumed" and e.data["recording_id"] == recording_id
                    for e in member.signaling.timeline
                ),
                timeout=RECOVERY_SECONDS,
            )
            await _media_everywhere(peers, within=RECOVERY_SECONDS, since=since)
            assert host.signaling.live.recording and member.signaling.live.recording
            resumed = [p for e, p in member.signaling.received if e == "recording" and p["resumed"]]
            assert resumed and resumed[-1]["part"] == 2 and resumed[-1]["state"] == "recording"
            before = host.frames_from("m1", "video")
            await host.wait_for(lambda: host.frames_from("m1", "video") >= before + 30)
            ack = await host.signaling.call("stop_recording")
            assert ack["recording"]["state"] == "stopped"
        finally:
            for peer in peers.values():
                await peer.close()
        manifest = json.loads(
            (a.data_dir / "recordings" / recording_id / "manifest.json").read_text()
        )
        assert [p["index"] for p in manifest["parts"]] == [1, 2]
        assert manifest["parts"][1]["node"] != manifest["parts"][0]["node"]
        assert len(manifest["gaps"]) == 1
        gap = manifest["gaps"][0]
        assert 0 < gap["end"] - gap["start"] < RECOVERY_SECONDS
        by_part = {
            p: {(f["participant"], f["kind"]) for f in manifest["files"] if f["part"] == p}
            for p in (1, 2)
        }
        assert by_part[1] >= {("host", "video"), ("m1", "video")}
        assert by_part[2] >= {("host", "video"), ("m1", "video")}
        assert all(f["error"] is None for f in manifest["files"]), manifest["files"]


async def test_the_rest_api_answers_503_while_redis_is_away_and_recovers(tmp_path: Path) -> None:
    async with cluster(tmp_path, 1) as c:
        (node,) = c.nodes
        room_id = await c.create_room()
        await c.valkey.stop()
        # What an organizer's page or a load balancer sees: a clear, retryable refusal
        # (503 with the JSON error body), not a 500 and not a hang.
        for method, path, body in [
            ("GET", "/api/rooms", None),
            ("GET", f"/api/rooms/{room_id}", None),
            ("POST", "/api/rooms", {**ROOM_SPEC, "title": "停电时的会议"}),
        ]:
            status, payload = await c.request(node, method, path, body)
            assert status == 503, (method, path, status, payload)
            assert payload["error"]["code"] == "state_unavailable", payload
        await c.valkey.start()
        async with asyncio.timeout(30):
            while (await c.request(node, "GET", "/api/rooms"))[0] != 200:
                await asyncio.sleep(0.5)  # polling as a client honouring Retry-After would
        status, rooms = await c.request(node, "GET", "/api/rooms")
        assert room_id in {r["room"]["id"] for r in rooms["rooms"]}, rooms
