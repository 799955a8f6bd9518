"""Media through the real server: aiortc participants publish and receive over Socket.IO signaling.

All media stays on 127.0.0.1 (the server gathers only there and accepts only
127/8; the test peers gather only there; an autouse guard fails any other send).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from server.media import IceAddress
from server.media.aiortc_internals import gather_only_on
from signaling.client import SignalingError
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server
from tests.media.media_testkit import CodecUsageProbe, CounterVideoTrack, client_configuration
from tests.session_peer import SessionPeer

VENUES = ["hunan", "national", "zhuzhou", "shifeng"]


class Session:
    """A room on the test server and the peers joined to it."""

    def __init__(self, server: ServerHandle, room_id: str) -> None:
        self.server = server
        self.room_id = room_id
        self.peers: list[SessionPeer] = []

    async def peer(
        self,
        identity: str,
        role: str = "member",
        venue: str | None = None,
        publish: bool = True,
        amplitude: float = 0.0,
    ) -> SessionPeer:
        index = len(self.peers) + 1
        venue = venue or ("hunan" if role == "host" else VENUES[index % len(VENUES)])
        token = await self.server.token(self.room_id, identity, role, venue)
        peer = SessionPeer(self.server.base_url, token, index, amplitude=amplitude)
        self.peers.append(peer)
        await peer.join()
        if publish:
            await peer.publish()
        return peer


@pytest.fixture
async def session(server: ServerHandle) -> AsyncIterator[Session]:
    room = await server.create_room()
    session = Session(server, room["id"])
    try:
        yield session
    finally:
        for peer in session.peers:
            await peer.close()


def _sees_and_hears(peer: SessionPeer, other: str) -> bool:
    return peer.frames_from(other, "video") >= 10 and peer.frames_from(other, "audio") >= 10


async def test_three_venues_see_and_hear_each_other_with_intact_content(session: Session) -> None:
    host = await session.peer("host", "host")
    city = await session.peer("m1", venue="zhuzhou")
    county = await session.peer("m2", venue="shifeng")
    everyone = {"host": host, "m1": city, "m2": county}
    for me, peer in everyone.items():
        for other in everyone:
            if other != me:
                await peer.wait_for(lambda p=peer, o=other: _sees_and_hears(p, o))
    # The frames are the publisher's own: the counter drawn into them reads back in order.
    for me, peer in everyone.items():
        for other, sender in everyone.items():
            if other == me:
                continue
            (track,) = peer.tracks_from(other, "video")
            senders = {s for s, _ in track.counters}
            counters = [c for _, c in track.counters]
            assert senders == {sender.index}, f"{me} got {other}'s video with foreign frames"
            assert counters == sorted(counters), f"{me} got {other}'s frames out of order"
            assert counters[-1] <= sender.video.sent


async def test_the_server_never_decodes_or_encodes(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CodecUsageProbe(monkeypatch)
    room = await server.create_room()
    session = Session(server, room["id"])
    try:
        a = await session.peer("host", "host")
        b = await session.peer("m1")
        await a.wait_for(lambda: _sees_and_hears(a, "m1"))
        await b.wait_for(lambda: _sees_and_hears(b, "host"))
        media_room = server.media_room(room["id"])
        assert media_room is not None
        server_pcs = media_room.peer_connections()
        assert server_pcs
        for pc in server_pcs:
            for transceiver in pc.getTransceivers():
                assert probe.frames_decoded_by(transceiver.receiver) == 0
                assert probe.frames_encoded_by(transceiver.sender) == 0
        assert probe.total_decoded > 0, "the probe works: the clients did decode"
    finally:
        for peer in session.peers:
            await peer.close()


async def test_late_joiner_gets_video_quickly(session: Session) -> None:
    host = await session.peer("host", "host")
    early = await session.peer("m1")
    await early.wait_for(lambda: _sees_and_hears(early, "host"))
    late = await session.peer("m2", publish=False)
    await late.wait_for(
        lambda: late.frames_from("host", "video") > 0 and late.frames_from("m1", "video") > 0
    )
    assert late.subscribe_connected_at is not None
    first = min(r.first_frame_at for r in late.received if r.kind == "video" and r.first_frame_at)
    assert first - late.subscribe_connected_at < 1.0
    await host.wait_for(lambda: host.frames_from("m1", "video") > 0)


async def test_leaving_and_removed_participants_tracks_end_for_everyone(session: Session) -> None:
    host = await session.peer("host", "host")
    leaver = await session.peer("m1")
    removed = await session.peer("m2")
    await host.wait_for(lambda: _sees_and_hears(host, "m1") and _sees_and_hears(host, "m2"))
    started = time.monotonic()
    await leaver.close()
    await host.wait_for(
        lambda: not host.tracks_from("m1", "video") and not host.tracks_from("m1", "audio")
    )
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    await host.signaling.remove("m2")
    await host.wait_for(lambda: not host.tracks_from("m2", "video"))
    assert time.monotonic() - started < 1.5
    assert removed.signaling.ended is not None


async def test_observer_receives_but_cannot_publish(session: Session) -> None:
    host = await session.peer("host", "host")
    observer = await session.peer("o1", role="observer", publish=False)
    await observer.wait_for(lambda: _sees_and_hears(observer, "host"))
    with pytest.raises(SignalingError) as refused:
        await observer.publish()
    assert refused.value.code == "publish_forbidden"
    assert not host.tracks_from("o1", "video")


async def test_rooms_are_isolated(server: ServerHandle, session: Session) -> None:
    a = await session.peer("host", "host")
    other_room = await server.create_room()
    other = Session(server, other_room["id"])
    try:
        b = await other.peer("host", "host")
        c = await other.peer("m1")
        await c.wait_for(lambda: _sees_and_hears(c, "host"))
        await b.wait_for(lambda: _sees_and_hears(b, "m1"))
        # Same identity "host" in both rooms: each room only ever offers its own tracks.
        assert {r.identity for r in a.received} == set()
        assert all(r.track is not a.video for r in b.received)
        assert {s for r in b.tracks_from("m1", "video") for s, _ in r.counters} == {c.index}
    finally:
        for peer in other.peers:
            await peer.close()


@pytest.mark.parametrize(
    ("sdp", "code"),
    [
        ("not sdp at all", "bad_sdp"),
        ("v=0\r\n" + "a=x\r\n" * 10, "bad_sdp"),
        ("v=0\r\n" + "a=" + "x" * 65_600 + "\r\n", "invalid_payload"),
        ("v=0\r\n" + "a=" + "x" * 80_000 + "\r\n", "payload_too_large"),
    ],
)
async def test_malformed_and_oversized_sdp_is_refused_and_breaks_nothing(
    session: Session, sdp: str, code: str
) -> None:
    host = await session.peer("host", "host")
    member = await session.peer("m1", publish=False)
    ack = await member.signaling.emit_raw("publish_offer", {"sdp": sdp})
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    ack = await member.signaling.emit_raw("subscriber_answer", {"sdp": sdp})
    assert ack["ok"] is False
    await member.publish()
    await host.wait_for(lambda: _sees_and_hears(host, "m1"))


async def test_active_speaker_is_announced_from_audio_levels(session: Session) -> None:
    host = await session.peer("host", "host", amplitude=0.0)
    await session.peer("m1", amplitude=0.5)
    await host.wait_for(
        lambda: any(
            name == "active_speaker" and payload["identity"] == "m1"
            for name, payload in host.signaling.received
        )
    )


async def test_answer_candidates_stay_on_the_configured_address(session: Session) -> None:
    member = await session.peer("m1", publish=False)
    await member.publish()
    assert member.publish_pc is not None
    answer = member.publish_pc.remoteDescription.sdp
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert candidates
    assert all(line.split()[4] == "127.0.0.1" for line in candidates), candidates


async def test_announced_address_replaces_the_local_one(redis_url: str, tmp_path: Path) -> None:
    announced = (IceAddress("127.0.0.1", announced="192.0.2.10"),)
    async with run_server(
        tmp_path / "d", free_port(), redis_url=redis_url, ice_addresses=announced
    ) as server:
        room = await server.create_room()
        client = await server.client(room["id"], "m1", "member", "hunan")
        pc = RTCPeerConnection(client_configuration())
        try:
            pc.addTransceiver(CounterVideoTrack(1), direction="sendonly")
            with gather_only_on(("127.0.0.1",)):
                await pc.setLocalDescription(await pc.createOffer())
            # The answer is only read, never applied: nothing is sent to the announced address.
            ack = await client.call("publish_offer", {"sdp": pc.localDescription.sdp})
        finally:
            await pc.close()
            await client.close()
    addresses = {
        line.split()[4] for line in ack["sdp"].splitlines() if line.startswith("a=candidate:")
    }
    assert addresses == {"192.0.2.10"}


async def test_last_n_limits_video_but_the_floor_is_always_seen(
    redis_url: str, tmp_path: Path
) -> None:
    async with run_server(tmp_path / "d", free_port(), redis_url=redis_url, last_n=1) as server:
        room = await server.create_room()
        session = Session(server, room["id"])
        try:
            host = await session.peer("host", "host")
            await session.peer("m1", amplitude=0.5)  # the active speaker
            await session.peer("m2")  # silent: beyond last-N
            viewer = await session.peer("o1", role="observer", publish=False)
            await viewer.wait_for(
                lambda: (
                    viewer.frames_from("host", "video") >= 20
                    and viewer.frames_from("m1", "video") >= 20
                )
            )
            assert viewer.frames_from("m2", "video") == 0, (
                "a silent member beyond last-N is not forwarded"
            )
            assert viewer.frames_from("m2", "audio") > 0, "audio is always forwarded"
            await host.signaling.grant_floor("m2")
            await viewer.wait_for(lambda: viewer.frames_from("m2", "video") >= 10)
        finally:
            for peer in session.peers:
                await peer.close()
