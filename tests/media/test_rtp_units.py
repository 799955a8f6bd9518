"""Unit tests of the forwarding pieces: keyframes, rewriting, queues, PLI limiting."""

from __future__ import annotations

import asyncio

from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from media_testkit import make_counter_frame

from server.media.forwarding_sender import ForwardingSender
from server.media.keyframes import h264_is_keyframe_start, vp8_is_keyframe_start
from server.media.rtp_rewriter import RtpRewriter
from server.media.track_forwarder import TrackForwarder

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


def _encode(encoder: object, count: int, force_first: bool = True) -> list[list[bytes]]:
    frames = []
    for i in range(count):
        frame = make_counter_frame(1, i, 160, 120)
        frame.pts = i * 3000
        frame.time_base = __import__("fractions").Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_first and i == 0)  # type: ignore[attr-defined]
        frames.append(payloads)
    return frames


def test_vp8_keyframe_detection_on_real_payloads() -> None:
    frames = _encode(Vp8Encoder(), 3)
    assert vp8_is_keyframe_start(frames[0][0])
    assert not any(vp8_is_keyframe_start(p) for p in frames[0][1:])
    assert not any(vp8_is_keyframe_start(p) for f in frames[1:] for p in f)
    assert not vp8_is_keyframe_start(b"")
    assert not vp8_is_keyframe_start(b"\x90")


def test_h264_keyframe_detection_on_real_payloads() -> None:
    frames = _encode(H264Encoder(), 3)
    assert h264_is_keyframe_start(frames[0][0])
    assert not any(h264_is_keyframe_start(p) for f in frames[1:] for p in f)
    assert h264_is_keyframe_start(bytes([0x7C, 0x85]))  # FU-A start of an IDR
    assert not h264_is_keyframe_start(bytes([0x7C, 0x05]))  # FU-A middle of an IDR


def _packet(seq: int, ts: int, ssrc: int = 1111, payload: bytes = b"x") -> RtpPacket:
    return RtpPacket(
        payload_type=100, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    )


def test_rewriter_keeps_a_continuous_stream_across_gaps_and_sources() -> None:
    rw = RtpRewriter(ssrc=42, payload_type=97, clock_rate=90000)
    first = rw.rewrite(_packet(65534, 1000), now=0.0)
    assert first is not None
    assert (first.ssrc, first.payload_type, first.payload) == (42, 97, b"x")
    second = rw.rewrite(_packet(65535, 4000), now=0.033)
    third = rw.rewrite(_packet(0, 4000), now=0.033)  # wraps
    assert second is not None
    assert third is not None
    assert (second.sequence_number - first.sequence_number) % 65536 == 1
    assert (third.sequence_number - first.sequence_number) % 65536 == 2
    assert (second.timestamp - first.timestamp) % 2**32 == 3000
    # A late retransmission keeps its place (offset mapping).
    late = rw.rewrite(_packet(65535, 4000), now=0.04)
    assert late is not None
    assert late.sequence_number == second.sequence_number
    # Skip ahead (packets dropped while waiting for a keyframe): no gap in output.
    rw.resync(_packet(500, 90000), now=1.0)
    resumed = rw.rewrite(_packet(500, 90000), now=1.0)
    assert resumed is not None
    assert (resumed.sequence_number - third.sequence_number) % 65536 == 1
    assert rw.rewrite(_packet(2, 5000), now=1.0) is None  # from before the resync point
    # A new source (publisher restarted): timestamps continue by wall clock.
    new_source = rw.rewrite(_packet(9, 7, ssrc=2222), now=2.0)
    assert new_source is not None
    assert (new_source.sequence_number - resumed.sequence_number) % 65536 == 1
    assert 80000 <= (new_source.timestamp - resumed.timestamp) % 2**32 <= 100000


class _Transport:
    state = "connected"


class _Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bool]] = []
        self.ended = False

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        self.packets.append((packet.sequence_number, is_keyframe))

    def on_forwarder_ended(self) -> None:
        self.ended = True


def _vp8(seq: int, keyframe: bool) -> RtpPacket:
    # S=1, PID=0; then the VP8 header's inverse keyframe bit.
    payload = bytes([0x10, 0x00 if keyframe else 0x01])
    return RtpPacket(payload_type=97, sequence_number=seq, timestamp=seq, ssrc=7, payload=payload)


async def test_pli_rate_limit_and_coalescing() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def send_pli(ssrc: int) -> None:
        sent.append(loop.time())
        if len(sent) == 2:
            done.set()

    forwarder = TrackForwarder(
        track_id="p-video-1",
        participant_id="p",
        kind="video",
        codec=VP8,
        send_pli=send_pli,
        keyframe_interval=0.2,
    )
    sink = _Sink()
    forwarder.attach(sink)
    forwarder.request_keyframe()  # before any packet: the SSRC is unknown yet
    forwarder.on_packet(_vp8(1, keyframe=False))  # now it can be sent
    for _ in range(10):
        forwarder.request_keyframe()  # coalesced into one more, 200 ms later
    await asyncio.wait_for(done.wait(), 2)
    assert len(sent) == 2
    assert sent[1] - sent[0] >= 0.19
    assert forwarder.keyframe_requests == 11
    assert sink.packets == [(1, False)]
    forwarder.end()
    assert sink.ended
    assert forwarder.sinks == ()


async def test_forwarding_sender_starts_at_keyframe_and_recovers_from_overflow() -> None:
    requests: list[int] = []

    async def send_pli(ssrc: int) -> None:
        requests.append(ssrc)

    forwarder = TrackForwarder(
        track_id="p-video-1", participant_id="p", kind="video", codec=VP8, send_pli=send_pli
    )
    sender = ForwardingSender(forwarder, _Transport(), queue_size=4)  # type: ignore[arg-type]
    sender._running = True  # as if negotiated; the RTP loop itself is tested end to end
    forwarder.attach(sender)
    forwarder.on_packet(_vp8(1, keyframe=False))
    assert sender.packets_queued == 0  # waits for a keyframe
    forwarder.on_packet(_vp8(2, keyframe=True))
    forwarder.on_packet(_vp8(3, keyframe=False))
    assert sender.packets_queued == 2
    for seq in range(4, 7):
        forwarder.on_packet(_vp8(seq, keyframe=False))  # the 5th overflows the queue of 4
    assert sender.overflows == 1
    forwarder.on_packet(_vp8(7, keyframe=False))  # dropped: waiting for a keyframe again
    forwarder.on_packet(_vp8(8, keyframe=True))
    assert [p.sequence_number for p, _ in sender._queue] == [8]
    sender.set_paused(True)
    forwarder.on_packet(_vp8(9, keyframe=True))
    assert not sender._queue
    sender.release()
    assert forwarder.sinks == ()
