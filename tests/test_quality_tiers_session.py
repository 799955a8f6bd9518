"""Quality per receiver through the real server's signaling: a camera published in two
encodings (`publish_offer.low_video`) reaches each receiver high on its stage and low in
a tile; `video_view` hides tiles; bad layer declarations and views are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from server.media.aiortc_internals import gather_only_on
from tests.helpers import ServerHandle
from tests.media.media_testkit import LOOPBACK, CounterVideoTrack, client_configuration
from tests.session_peer import SessionPeer

HIGH = (320, 240)
LOW = (160, 120)


class TwoEncodingPeer(SessionPeer):
    """A publisher that sends its camera twice, like the browser: high and low."""

    async def publish(self) -> None:
        self.publishing = True
        pc = self.publish_pc = RTCPeerConnection(client_configuration())
        pc.addTransceiver(self.audio, direction="sendonly")
        high = pc.addTransceiver(CounterVideoTrack(self.index, *HIGH), direction="sendonly")
        low = pc.addTransceiver(CounterVideoTrack(self.index, *LOW), direction="sendonly")
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        ack = await self.signaling.call(
            "publish_offer", {"sdp": pc.localDescription.sdp, "low_video": {low.mid: high.mid}}
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))


def size_from(peer: SessionPeer, identity: str) -> tuple[int, int] | None:
    tracks = peer.tracks_from(identity, "video")
    return tracks[-1].size if tracks else None


@pytest.fixture
async def peers(server: ServerHandle) -> AsyncIterator[dict[str, SessionPeer]]:
    room = await server.create_room()
    made: dict[str, SessionPeer] = {}

    async def join(identity: str, role: str, venue: str, cls: type[SessionPeer]) -> None:
        token = await server.token(room["id"], identity, role, venue)
        peer = cls(server.base_url, token, len(made) + 1)
        made[identity] = peer
        await peer.join()

    try:
        await join("host", "host", "hunan", TwoEncodingPeer)
        await join("m1", "member", "zhuzhou", TwoEncodingPeer)
        await join("m2", "member", "national", SessionPeer)
        yield made
    finally:
        for peer in made.values():
            await peer.close()


async def test_stage_high_tiles_low_and_hidden_tiles(peers: dict[str, SessionPeer]) -> None:
    host, m1, m2 = peers["host"], peers["m1"], peers["m2"]
    await host.publish()
    await m1.publish()
    # No floor: the host is on everyone's stage; m1 is a tile.
    await m2.wait_for(lambda: size_from(m2, "host") == HIGH and size_from(m2, "m1") == LOW)
    # A camera is one track for receivers: the low encoding is no track of its own.
    assert len(m2.tracks_from("m1", "video")) == 1

    # The floor passes to m1: m1 goes high, the host low, for every receiver.
    await host.signaling.call("grant_floor", {"identity": "m1"})
    await m2.wait_for(lambda: size_from(m2, "host") == LOW and size_from(m2, "m1") == HIGH)

    # m2 pins the host on its own screen: high for m2 only.
    await m2.signaling.call("video_view", {"pinned": "host", "tiles_visible": True})
    await m2.wait_for(lambda: size_from(m2, "host") == HIGH and size_from(m2, "m1") == LOW)
    assert size_from(host, "m1") == HIGH

    # m2 hides its tiles: m1's video stops for m2 while the pinned host keeps playing.
    await m2.signaling.call("video_view", {"pinned": "host", "tiles_visible": False})
    m1_frames = m2.frames_from("m1", "video")
    host_frames = m2.frames_from("host", "video")
    await m2.wait_for(lambda: m2.frames_from("host", "video") >= host_frames + 60)
    assert m2.frames_from("m1", "video") <= m1_frames + 10  # what was in flight at most


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"pinned": 5}, "invalid_payload"),
        ({"pinned": "x" * 500}, "invalid_payload"),
        ({"tiles_visible": "no"}, "invalid_payload"),
        ({"extra": True}, "invalid_payload"),
    ],
)
async def test_bad_video_view_is_refused(
    peers: dict[str, SessionPeer], payload: dict[str, object], code: str
) -> None:
    ack = await peers["m2"].signaling.emit_raw("video_view", payload)
    assert ack["ok"] is False and ack["error"]["code"] == code


@pytest.mark.parametrize(
    ("low_video", "code"),
    [
        ({"1": "9"}, "bad_sdp"),  # not an m-line of the offer
        ({"0": "1"}, "bad_sdp"),  # audio is no camera
        ({"2": "2"}, "bad_sdp"),
        ({"2": "1", "3": "1"}, "invalid_payload"),  # one low encoding per offer
        ({"<script>": "1"}, "invalid_payload"),
        ("1", "invalid_payload"),
    ],
)
async def test_bad_low_video_is_refused_and_breaks_nothing(
    peers: dict[str, SessionPeer], low_video: object, code: str
) -> None:
    m1, m2 = peers["m1"], peers["m2"]
    pc = RTCPeerConnection(client_configuration())
    try:
        pc.addTransceiver(m1.audio, direction="sendonly")
        pc.addTransceiver(CounterVideoTrack(1, *HIGH), direction="sendonly")
        pc.addTransceiver(CounterVideoTrack(1, *LOW), direction="sendonly")
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        ack = await m1.signaling.emit_raw(
            "publish_offer", {"sdp": pc.localDescription.sdp, "low_video": low_video}
        )
        assert ack["ok"] is False and ack["error"]["code"] == code
    finally:
        await pc.close()
    await m1.publish()
    await m2.wait_for(lambda: size_from(m2, "m1") is not None)
