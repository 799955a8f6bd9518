"""Media through the real server: aiortc participants publish and receive over Socket.IO signaling.

All media stays on 127.0.0.1 (the server gathers only there and accepts only
127/8; the test peers gather only there; an autouse guard fails any other send).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from server import appkeys
from signaling.client import SignalingError
from tests.helpers import ServerHandle
from tests.media.media_testkit import CodecUsageProbe
from tests.session_peer import SessionPeer

VENUES = ["hunan", "national", "zhuzhou", "shifeng"]


class Session:
    """A room on the test server and the peers joined to it."""

    def __init__(self, server: ServerHandle, room_id: str) -> None:
        self.server = server
        self.room_id = room_id
        self.peers: list[SessionPeer] = []

    async def peer(
        self, identity: str, role: str = "member", venue: str | None = None, publish: bool = True
    ) -> SessionPeer:
        index = len(self.peers) + 1
        venue = venue or ("hunan" if role == "host" else VENUES[index % len(VENUES)])
        token = await self.server.token(self.room_id, identity, role, venue)
        peer = SessionPeer(self.server.base_url, token, index)
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
        media_room = server.app[appkeys.SERVICE].media.room(room["id"])
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
