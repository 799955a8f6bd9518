"""The load tools' cheap receive (server/loadtest/cheap_receive.py) against a real room.

A real aiortc publisher sends a pre-encoded VP8 clip and Opus (what load-test
publishers send) to a MediaRoom; a subscriber set up as the load tools set
theirs up (a TrackCounter per track, cheap_receive installed before the answer)
receives them. A spy sits in front of the hook in aioice's datagram callback:
it sees every datagram the subscriber receives, drops a few of the video
packets (loss the counters must show), and hands the hook forged copies
(tampered, replayed) that must not be counted. When the publisher stops, what
was counted is checked against what the server's senders say they sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.sdp import SessionDescription
from media_testkit import (
    LOOPBACK,
    MediaTestClient,
    RoomHarness,
    client_configuration,
    loopback_config,
)

from server.loadtest import cheap_receive
from server.loadtest.clip import ClipTrack, encode_audio, encode_video
from server.loadtest.receiver_stats import TrackCounter
from server.media.aiortc_internals import (
    ICE_CONNECTION_ATTRIBUTE,
    gather_only_on,
    install_jitter_buffer,
    received_counts,
)
from server.media.quality_tiers import TierThresholds

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
#: Video packets the spy drops, once the hook has counted this many video packets.
DROPPED, DROP_AFTER = 5, 40
#: Adaptation off: the dropped packets must not step the subscriber down (which
#: would change what the server sends while the test counts it).
NO_ADAPTATION = TierThresholds(down_loss=1.0, up_loss=0.99, down_jitter=1e9, remb_hold=1e9)


@dataclass
class Spy:
    """What the spy saw and did, in front of the hook."""

    video_ssrc: int
    hook: cheap_receive.CheapReceive
    counter: Callable[[], TrackCounter | None]
    video_datagrams: int = 0  # genuine video RTP datagrams delivered (not dropped)
    video_markers: int = 0  # ... of which with the marker bit (end of a frame)
    dropped: int = 0
    dropped_bytes: int = 0  # whole datagrams
    # (rejected delta, counted delta) for: a tampered copy, the original, a replay.
    forgery: tuple[tuple[int, int], ...] | None = None


def _is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 208


class CountingSubscriber(MediaTestClient):
    """A subscriber as bench/tiers.py and `yitang loadtest` have theirs."""

    def __init__(self, harness: RoomHarness, participant_id: str) -> None:
        super().__init__(harness, participant_id, 9, video=False, audio=False)
        self.counters: dict[str, TrackCounter] = {}
        self.receivers: dict[str, object] = {}
        self.spy: Spy | None = None

    async def on_subscriber_offer(self, sdp: str) -> None:
        if self.closed:
            return
        if self.sub_pc is None:
            self.sub_pc = RTCPeerConnection(client_configuration())
            self.sub_pc.on("track", self._on_track)
        pc = self.sub_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        hooks = cheap_receive.install(pc)
        assert len(hooks) == 1  # max-bundle: one transport
        if self.spy is None:
            self._install_spy(pc, hooks[0], sdp)
        await self.room.subscriber_answer(self.participant_id, pc.localDescription.sdp)
        self.harness.signal.notify()

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.sub_pc is not None
        receiver = next(
            t.receiver for t in self.sub_pc.getTransceivers() if t.receiver.track is track
        )
        counter = TrackCounter(track.kind)
        install_jitter_buffer(receiver, counter)
        self.counters[track.kind] = counter
        self.receivers[track.kind] = receiver

    def _install_spy(
        self, pc: RTCPeerConnection, hook: cheap_receive.CheapReceive, sdp: str
    ) -> None:
        video = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
        spy = self.spy = Spy(video[0].ssrc[0].ssrc, hook, lambda: self.counters.get("video"))
        dtls = pc.getTransceivers()[0].receiver.transport
        connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE)
        hooked = connection.data_received
        assert hooked == hook.data_received

        def in_front(data: bytes, component: int) -> None:
            ssrc = int.from_bytes(data[8:12], "big") if _is_rtp(data) else None
            counter = spy.counter()
            if ssrc != spy.video_ssrc or counter is None:
                hooked(data, component)
                return
            if counter.packets >= DROP_AFTER and spy.dropped < DROPPED:
                spy.dropped += 1
                spy.dropped_bytes += len(data)
                return  # lost on the way: never reaches the subscriber
            if spy.dropped == DROPPED and spy.forgery is None:
                deltas = []
                tampered = data[:-1] + bytes([data[-1] ^ 0x01])  # one bit of the auth tag
                for datagram in (tampered, data, data):  # forged, genuine, replayed
                    rejected, counted = hook.rejected, counter.packets
                    hooked(datagram, component)
                    deltas.append((hook.rejected - rejected, counter.packets - counted))
                if deltas[1] == (0, 1):  # the hook took them (not aiortc's queue, busy then)
                    spy.forgery = tuple(deltas)
            else:
                hooked(data, component)
            spy.video_datagrams += 1  # a genuine datagram delivered (once)
            spy.video_markers += data[1] >> 7

        connection.data_received = in_front


async def _publish(harness: RoomHarness) -> tuple[RTCPeerConnection, list[ClipTrack]]:
    """A venue publishing as the load tools' publishers do: a pre-encoded clip and Opus."""
    await harness.room.add_participant("pub", can_publish=True)
    pc = RTCPeerConnection(client_configuration())
    tracks = [ClipTrack(encode_audio()), ClipTrack(encode_video("vp8", 320, 180, 30, 300_000))]
    pc.addTransceiver(tracks[0], direction="sendonly")
    camera = pc.addTransceiver(tracks[1], direction="sendonly")
    capabilities = RTCRtpSender.getCapabilities("video")
    camera.setCodecPreferences(
        [c for c in capabilities.codecs if c.mimeType in ("video/VP8", "video/rtx")]
    )
    with gather_only_on(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    answer = await harness.room.publish("pub", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, tracks


@pytest.mark.timeout(90)
async def test_cheap_receive_counts_what_the_server_sent_and_nothing_forged() -> None:
    harness = RoomHarness(loopback_config(tiers=NO_ADAPTATION))
    publisher_pc: RTCPeerConnection | None = None
    try:
        publisher_pc, tracks = await _publish(harness)
        subscriber = CountingSubscriber(harness, "sub")
        harness.clients["sub"] = subscriber
        await harness.room.add_participant("sub", can_publish=False)

        def video() -> TrackCounter | None:
            return subscriber.counters.get("video")

        await harness.wait_until(
            lambda: (counter := video()) is not None and counter.frames >= 45
            and subscriber.spy is not None and subscriber.spy.forgery is not None,
            "45 video frames counted, the drops and the forgeries done",
            within=40,
        )  # fmt: skip
        spy = subscriber.spy
        assert spy is not None and subscriber.sub_pc is not None
        # Installing again (as after a renegotiation) keeps the hook, behind the spy.
        assert cheap_receive.install(subscriber.sub_pc) == [spy.hook]
        for track in tracks:
            track.stop()  # the publisher sends nothing more; its connection stays

        def counted() -> int:
            return sum(c.packets for c in subscriber.counters.values())

        await harness.wait_until(
            lambda: counted() + spy.dropped == harness.room.stats().packets_sent,
            "every packet the server sent counted, but those dropped on the way",
            within=20,
        )
        stats = harness.room.stats()
        audio, camera = subscriber.counters["audio"], subscriber.counters["video"]

        # Almost all of it in the datagram callback: the first packets of each SSRC may
        # take aiortc's path (before its router knows them), which the counter counts too.
        assert spy.hook.packets >= 0.9 * counted()
        assert spy.hook.errors == 0 and spy.hook.malformed == 0
        # A tampered copy and a replay are refused by SRTP, never counted; the genuine
        # datagram is counted once.
        assert spy.forgery == ((1, 0), (0, 1), (1, 0))
        # Payload bytes, as the server counts them (RTP headers and SRTP tags left out):
        # the counters' bytes add 12 per packet; the dropped datagrams are within what
        # they were on the wire.
        payload = sum(c.bytes - 12 * c.packets for c in subscriber.counters.values())
        assert stats.octets_sent - spy.dropped_bytes <= payload <= stats.octets_sent
        # Frames: one per marker bit among the genuine video datagrams delivered.
        assert camera.frames == spy.video_markers
        assert camera.packets == spy.video_datagrams
        # Loss from the sequence numbers: exactly the dropped packets (no NACK asks
        # for them again), none on audio.
        assert camera.expected - camera.packets == DROPPED
        assert audio.expected == audio.packets > 0 and audio.frames == audio.packets
        # aiortc's receiver statistics (its RTCP receiver reports) saw the same.
        assert received_counts(subscriber.receivers["video"]) == (  # type: ignore[arg-type]
            camera.expected,
            camera.packets,
        )
        assert received_counts(subscriber.receivers["audio"]) == (  # type: ignore[arg-type]
            audio.packets,
            audio.packets,
        )
    finally:
        await harness.close()
        if publisher_pc is not None:
            await publisher_pc.close()


def test_rtp_payload_size_skips_csrcs_extension_and_padding() -> None:
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=1, ssrc=2, payload=b"p" * 50)
    assert cheap_receive.rtp_payload_size(packet.serialize()) == 50
    packet.csrc = [11, 12, 13]
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=MID_URI)])
    )
    packet.extensions.mid = "audio-and-video"  # a one-byte header extension, 5 words
    packet.padding_size = 7
    data = packet.serialize(extensions)
    parsed = RtpPacket.parse(data, extensions)
    assert parsed.extensions.mid == "audio-and-video"
    assert parsed.padding_size == 7 and len(parsed.csrc) == 3
    assert cheap_receive.rtp_payload_size(data) == len(parsed.payload) == 50
    for bad in (data[:11], data[:14], b"\x00" + data[1:], data[:-1] + b"\xff", data[:-1] + b"\0"):
        with pytest.raises(ValueError, match="RTP packet"):
            RtpPacket.parse(bad)
        assert cheap_receive.rtp_payload_size(bad) == -1
