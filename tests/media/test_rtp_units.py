"""Unit tests of the forwarding pieces: keyframes, rewriting, queues, PLI limiting."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import select
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc import clock as aiortc_clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtcpReceiverInfo, RtcpRrPacket, RtpPacket
from media_testkit import make_counter_frame, require_compiled
from pylibsrtp import Policy, Session

from server.media import fanout
from server.media.aiortc_internals import (
    SENDER_ATTRIBUTES,
    RtpSendChannel,
    SrtpProtector,
    ntp_time,
)
from server.media.fanout import Rewriter
from server.media.forwarding_sender import ForwardingSender
from server.media.keyframes import h264_is_keyframe_start, vp8_is_keyframe_start
from server.media.packet_tap import PacketTap
from server.media.quality_tiers import ReceiverQuality, TierThresholds
from server.media.rtp_header import OutgoingHeader
from server.media.sent_history import SENT_HISTORY_SIZE, SentHistory, SentHistoryLike
from server.media.track_forwarder import TrackForwarder

# As negotiated with a browser: its receiver may NACK (so the history keeps packets).
VP8 = RTCRtpCodecParameters(
    mimeType="video/VP8",
    clockRate=90000,
    payloadType=97,
    rtcpFeedback=[RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")],
)
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


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


def _rewriter(fanout_path: str, *, ssrc: int, payload_type: int, clock_rate: int) -> Rewriter:
    # RtpRewriter, or the compiled stream that is its C twin (the same state and rules).
    return fanout.new_rewriter(
        ssrc=ssrc,
        payload_type=payload_type,
        clock_rate=clock_rate,
        compiled=fanout_path == "compiled",
    )


def _packet(seq: int, ts: int, ssrc: int = 1111, payload: bytes = b"x") -> RtpPacket:
    return RtpPacket(
        payload_type=100, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    )


def test_rewriter_keeps_a_continuous_stream_across_gaps_and_sources(fanout_path: str) -> None:
    rw = _rewriter(fanout_path, ssrc=42, payload_type=97, clock_rate=90000)
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
    _stats_id = "transport"  # aiortc's sender names it in the stats of a receiver report

    def _get_stats(self) -> dict[str, object]:  # what RTCRtpSender.getStats adds
        return {}


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


async def test_forwarding_sender_starts_at_keyframe_and_recovers_from_overflow(
    fanout_path: str,
) -> None:
    requests: list[int] = []

    async def send_pli(ssrc: int) -> None:
        requests.append(ssrc)

    forwarder = TrackForwarder(
        track_id="p-video-1", participant_id="p", kind="video", codec=VP8, send_pli=send_pli
    )
    output = _RecordingOutput()
    sender = ForwardingSender(forwarder, _Transport(), queue_size=4)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run_forwarding(RtpSendChannel(sender, VP8, output)))
    try:
        await _yield_until(lambda: sender.running, "the sender to start")
        forwarder.on_packet(_vp8(1, keyframe=False))
        assert sender.packets_queued == 0  # waits for a keyframe
        forwarder.on_packet(_vp8(2, keyframe=True))
        forwarder.on_packet(_vp8(3, keyframe=False))
        assert sender.packets_queued == 2
        # The subscriber's socket buffer fills up (the kernel refuses datagrams):
        # more than 4 packets' worth buffered is an overflow.
        output.buffered = 5 * 1200
        forwarder.on_packet(_vp8(4, keyframe=False))
        assert sender.overflows == 1
        forwarder.on_packet(_vp8(5, keyframe=True))  # dropped: the buffer is still full
        assert sender.packets_queued == 3
        output.buffered = 0  # drained
        forwarder.on_packet(_vp8(6, keyframe=False))  # dropped: waiting for a keyframe again
        forwarder.on_packet(_vp8(7, keyframe=True))
        assert sender.packets_queued == 4
        sent = [struct.unpack_from("!H", data, 2)[0] for data in output.sent]
        assert [(b - a) % 65536 for a, b in itertools.pairwise(sent)] == [1, 1, 1]
        sender.set_paused(True)
        forwarder.on_packet(_vp8(8, keyframe=True))
        assert sender.packets_queued == 4
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    sender.release()
    assert forwarder.sinks == ()


def _assert_continuous(out: list[RtpPacket], ts_step: int) -> None:
    for before, after in itertools.pairwise(out):
        assert (after.sequence_number - before.sequence_number) % 65536 == 1, after
        assert (after.timestamp - before.timestamp) % 2**32 == ts_step, after


def test_rewriter_forwards_long_streams_across_many_sequence_wraps(fanout_path: str) -> None:
    # More than two full wraps of the 16-bit sequence number (about 47 minutes
    # of Opus): before the fix every packet more than 32768 past the resync
    # point was dropped as "older than the resync point".
    count = 140_000
    rw = _rewriter(fanout_path, ssrc=42, payload_type=111, clock_rate=48000)
    start_seq, start_ts = 65000, 2**32 - 960 * 50  # the timestamp wraps too
    out = []
    for i in range(count):
        packet = _packet((start_seq + i) % 65536, (start_ts + 960 * i) % 2**32)
        rewritten = rw.rewrite(packet, now=i * 0.02)
        assert rewritten is not None, f"packet {i} dropped"
        out.append(rewritten)
    _assert_continuous(out, 960)
    assert rw.late_dropped == 0
    # Late retransmissions keep their place long after the resync point.
    late = rw.rewrite(_packet((start_seq + count - 10) % 65536, 0), now=count * 0.02)
    assert late is not None
    assert late.sequence_number == out[-10].sequence_number


def test_rewriter_drops_late_packets_from_before_a_resync_point_after_wraps(
    fanout_path: str,
) -> None:
    rw = _rewriter(fanout_path, ssrc=42, payload_type=97, clock_rate=90000)
    seq = 100
    sent: list[RtpPacket] = []

    def push(s: int) -> RtpPacket | None:
        out = rw.rewrite(_packet(s % 65536, s * 3000 % 2**32), now=0.0)
        if out is not None:
            sent.append(out)
        return out

    for _ in range(3):
        # A stretch long enough to wrap, then a gap (packets skipped while
        # waiting for a keyframe) and a resync on the keyframe.
        for s in range(seq, seq + 70_000):
            assert push(s) is not None
        keyframe = seq + 70_000 + 50
        rw.resync(_packet(keyframe % 65536, keyframe * 3000 % 2**32), now=0.0)
        assert push(keyframe) is not None
        assert (sent[-1].sequence_number - sent[-2].sequence_number) % 65536 == 1  # no gap
        recent = {p.sequence_number for p in sent[-5000:]}
        # Late retransmissions of packets from just before the keyframe (lost ones
        # in the gap and ones already forwarded) would reuse numbers: dropped.
        for late in (keyframe - 1, keyframe - 30, keyframe - 60, keyframe - 1000):
            assert push(late) is None, late
        # After the keyframe, a late packet keeps its place, without collision.
        assert push(keyframe + 2) is not None
        fill = push(keyframe + 1)
        assert fill is not None
        assert fill.sequence_number not in recent
        assert (sent[-2].sequence_number - fill.sequence_number) % 65536 == 1
        seq = keyframe + 3
    assert rw.late_dropped == 12


def test_rewriter_drops_hopelessly_late_packets_and_follows_a_renumbered_source(
    fanout_path: str,
) -> None:
    rw = _rewriter(fanout_path, ssrc=42, payload_type=97, clock_rate=90000)
    out = [rw.rewrite(_packet(s, s * 3000), now=0.0) for s in range(1000, 5000)]
    assert all(p is not None for p in out)
    # One packet far behind (more than the late window): dropped.
    assert rw.rewrite(_packet(1500, 1500 * 3000), now=0.0) is None
    assert rw.rewrite(_packet(5000, 5000 * 3000), now=0.0) is not None
    # The source restarts its numbering (same SSRC): the first packet is dropped,
    # the next one confirms the restart and the output continues seamlessly.
    last = rw.rewrite(_packet(5001, 5001 * 3000), now=0.0)
    assert last is not None
    assert rw.rewrite(_packet(20, 5002 * 3000), now=0.0) is None
    resumed = rw.rewrite(_packet(21, 5003 * 3000), now=0.0)
    assert resumed is not None
    assert (resumed.sequence_number - last.sequence_number) % 65536 == 1
    assert (resumed.timestamp - last.timestamp) % 2**32 == 2 * 3000
    following = rw.rewrite(_packet(22, 5004 * 3000), now=0.0)
    assert following is not None
    assert (following.sequence_number - resumed.sequence_number) % 65536 == 1


class _RecordingOutput:
    """Stands in for the subscriber's transport (SRTP + socket): records what is sent.

    The real send path is exercised end to end with aiortc peers in
    test_forwarding.py; here the rewriting is checked packet by packet.
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.buffered = 0

    def send(self, header: bytes | bytearray, payload: bytes) -> int:
        self.sent.append(bytes(header) + payload)
        return self.buffered

    def buffered_bytes(self) -> int:
        return self.buffered


class _UdpSrtpOutput:
    """A real SRTP session and UDP socket on 127.0.0.1: DtlsRtpOutput without DTLS and ICE.

    Like DtlsRtpOutput it offers the compiled fan-out its fast path
    (``fast_path()``), so the C code protects and sends here; ``received()``
    is what a receiver gets after SRTP (unprotected with the same key).
    """

    _KEY = bytes(range(30))

    def __init__(self, transport: asyncio.DatagramTransport, receiver: socket.socket) -> None:
        policy = Policy(key=self._KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True  # as aiortc's: a packet C hands back is protected again
        self._protector = SrtpProtector(Session(policy=policy))
        self._rx = Session(policy=Policy(key=self._KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
        self.transport = transport
        self._receiver = receiver
        self._address: tuple[str, int] = receiver.getsockname()
        self._received: list[bytes] = []

    @classmethod
    async def open(cls) -> _UdpSrtpOutput:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        return cls(transport, receiver)

    def send(self, header: bytes | bytearray, payload: bytes) -> int:
        if self.transport.is_closing():
            raise ConnectionError("closed")
        self.transport.sendto(self._protector.protect(header, payload), self._address)
        buffered: int = self.transport.get_write_buffer_size()
        return buffered

    def buffered_bytes(self) -> int:
        buffered: int = self.transport.get_write_buffer_size()
        return buffered

    def fast_path(self) -> dict[str, object]:
        return {
            **self._protector.fast_path(),
            "transport": self.transport,
            "fd": self.transport.get_extra_info("socket").fileno(),
            "host": self._address[0],
            "port": self._address[1],
        }

    def received(self, count: int) -> list[bytes]:
        """The packets received so far, after waiting (bounded) for ``count`` of them."""
        deadline = time.monotonic() + 10
        while len(self._received) < count and time.monotonic() < deadline:
            try:
                data = self._receiver.recv(2048)
            except BlockingIOError:
                select.select([self._receiver], [], [], 0.1)
                continue
            self._received.append(self._rx.unprotect(data))
        return self._received

    def received_now(self) -> list[bytes]:
        """The packets received so far, without waiting: a datagram sent on loopback is in
        the receiver's socket when sendto returns."""
        while True:
            try:
                data = self._receiver.recv(2048)
            except BlockingIOError:
                return self._received
            self._received.append(self._rx.unprotect(data))

    def close(self) -> None:
        self.transport.close()
        self._receiver.close()


async def _yield_until(predicate: Callable[[], bool], what: str, limit: int = 10_000) -> None:
    # Everything here runs on the loop without I/O: yielding lets the sender's
    # task run; the bound turns a hang into a failure.
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def _sending_pair(
    extensions: HeaderExtensionsMap | None = None,
) -> tuple[TrackForwarder, ForwardingSender, _RecordingOutput, RtpSendChannel]:
    async def no_pli(ssrc: int) -> None:
        return None

    forwarder = TrackForwarder(
        track_id="p-video-1", participant_id="p", kind="video", codec=VP8, send_pli=no_pli
    )
    output = _RecordingOutput()
    sender = ForwardingSender(forwarder, _Transport(), queue_size=512)  # type: ignore[arg-type]
    if extensions is not None:  # as negotiation would (the channel uses the sender's map)
        setattr(sender, SENDER_ATTRIBUTES["header_extensions_map"], extensions)
    channel = RtpSendChannel(sender, VP8, output)
    return forwarder, sender, output, channel


async def test_a_receiver_report_reaches_the_statistics_with_its_round_trip_time() -> None:
    """What a subscriber reports about a stream shows in getStats() as aiortc shows it
    (its statistics object is made when asked for, not per report): loss, jitter, and
    the round-trip time from the sender report it answers."""
    _, sender, _, channel = _sending_pair()
    sender.channel = channel
    stats = await sender.getStats()
    assert not any(s.type == "remote-inbound-rtp" for s in stats.values())

    lsr = 0x12345678
    setattr(sender, SENDER_ATTRIBUTES["lsr"], lsr)
    before = time.time()
    setattr(sender, SENDER_ATTRIBUTES["lsr_time"], before - 1.0)  # our report, 1 s ago
    info = RtcpReceiverInfo(
        ssrc=channel.ssrc, fraction_lost=26, packets_lost=7, highest_sequence=500,
        jitter=90, lsr=lsr, dlsr=65536 // 4,  # held 0.25 s by the receiver
    )  # fmt: skip
    elsewhere = RtcpReceiverInfo(
        ssrc=channel.ssrc ^ 1, fraction_lost=200, packets_lost=99, highest_sequence=1,
        jitter=1, lsr=0, dlsr=0,
    )  # fmt: skip
    await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=4242, reports=[elsewhere, info]))
    after = time.time()
    (remote,) = [s for s in (await sender.getStats()).values() if s.type == "remote-inbound-rtp"]
    assert (remote.ssrc, remote.kind, remote.transportId) == (4242, "video", "transport")
    assert (remote.fractionLost, remote.packetsLost, remote.jitter) == (26, 7, 90)
    assert remote.packetsReceived == channel.packets_sent - 7
    assert 0.75 <= remote.roundTripTime <= 0.75 + (after - before)
    assert before <= remote.timestamp.timestamp() <= after

    # A later report replaces it; the round-trip time is smoothed as aiortc smooths it.
    first_rtt = remote.roundTripTime
    later = RtcpReceiverInfo(
        ssrc=channel.ssrc, fraction_lost=0, packets_lost=7, highest_sequence=600,
        jitter=10, lsr=0, dlsr=0,  # answers no report of ours: no new sample
    )  # fmt: skip
    await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=4242, reports=[later]))
    (remote,) = [s for s in (await sender.getStats()).values() if s.type == "remote-inbound-rtp"]
    assert (remote.fractionLost, remote.jitter, remote.roundTripTime) == (0, 10, first_rtt)


async def test_a_receiver_report_leaves_only_numbers_behind(fanout_path: str) -> None:
    """What a report leaves on its sender and in the receiver's quality window until the
    next one (~1 s, ~2 000 senders on a node) is plain numbers, nothing the cyclic
    collector tracks: such objects are what its young collections walk, with the event
    loop stopped (a tuple per report made those collections take 3-12 ms)."""
    forwarder, sender, output, channel = _sending_pair()
    quality = ReceiverQuality(TierThresholds(), time.monotonic())
    sender.on_report = lambda loss, jitter: quality.observe_report(time.monotonic(), loss, jitter)
    task = asyncio.create_task(sender.run_forwarding(channel))

    async def report(highest: int) -> None:
        setattr(sender, SENDER_ATTRIBUTES["lsr"], 0x1234)
        setattr(sender, SENDER_ATTRIBUTES["lsr_time"], time.time() - 0.1)
        info = RtcpReceiverInfo(
            ssrc=channel.ssrc, fraction_lost=3, packets_lost=2, highest_sequence=highest,
            jitter=40, lsr=0x1234, dlsr=6553,  # the round trip is measured too
        )  # fmt: skip
        await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=7, reports=[info]))

    def new_tracked(before: dict[str, object], after: dict[str, object]) -> list[str]:
        return [k for k, v in after.items() if before.get(k) is not v and gc.is_tracked(v)]

    try:
        await _yield_until(lambda: sender.running, "the sender to start")
        for seq in range(1, 81):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
        offset = struct.unpack_from("!H", output.sent[0], 2)[0] - 1  # the receiver's numbers
        await report(offset + 40)
        before, quality_before = dict(vars(sender)), dict(vars(quality))
        await report(offset + 80)
        assert sender.report_time > 0 and len(quality._sample_times) == 2, "both were judged"
        assert new_tracked(before, dict(vars(sender))) == []
        assert new_tracked(quality_before, dict(vars(quality))) == []
        kept = [x for v in vars(quality).values() if isinstance(v, deque) for x in v]
        assert kept and not any(gc.is_tracked(x) for x in kept)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_receiver_report_is_corrected_for_the_uplink_loss_of_its_own_packets(
    fanout_path: str,
) -> None:
    # The publisher's uplink lost 30 % of the packets one receiver report counts, and
    # nothing of the 80 forwarded after them before the report came (in flight, or a
    # busy server). The report's loss is the uplink's, not the receiver's link: counted
    # over the time between reports (diluted by the 80) it looked like 22 % of its own.
    forwarder, sender, output, channel = _sending_pair()
    judged: list[float] = []
    sender.on_report = lambda fraction_lost, jitter: judged.append(fraction_lost)
    task = asyncio.create_task(sender.run_forwarding(channel))

    def forward(first: int, count: int, skip_every: int | None = None) -> list[int]:
        skipped = []
        for seq in range(first, first + count):
            if skip_every is not None and seq % skip_every == 0:
                skipped.append(seq)  # lost on the uplink: never reaches the forwarder
                continue
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
        return skipped

    async def report(highest_source_seq: int, fraction_lost: float) -> None:
        highest = highest_source_seq + offset  # as the receiver numbers it (extended)
        info = RtcpReceiverInfo(
            ssrc=channel.ssrc, fraction_lost=round(fraction_lost * 256), packets_lost=0,
            highest_sequence=highest, jitter=0, lsr=0, dlsr=0,
        )  # fmt: skip
        await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[info]))

    try:
        await _yield_until(lambda: sender.running, "the sender to start")
        forward(1, 40)
        offset = struct.unpack_from("!H", output.sent[0], 2)[0] - 1
        await report(40, 0.0)  # a clean start
        skipped = forward(41, 40, skip_every=3)
        forward(81, 80)  # sent before the next report arrives
        assert len(skipped) == 13
        await report(80, len(skipped) / 40)
        assert sender.last_report_loss[1] == pytest.approx(13 / 40)
        assert judged[-1] == pytest.approx(0.0, abs=0.01)  # 0.22 counted by time
        # The receiver's own link loses a tenth of what we sent it, on top (the report
        # counts from its last one: the 80 clean packets and 60 more, a quarter lost).
        skipped = forward(161, 60, skip_every=4)
        await report(220, 1 - (1 - len(skipped) / 140) * 0.9)
        assert judged[-1] == pytest.approx(0.1, abs=0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_report_that_saw_no_new_packet_is_not_judged(fanout_path: str) -> None:
    # A paused stream's receiver goes on reporting it (aiortc's every second, for good),
    # with the jitter of its last packet frozen and no loss: such a block says nothing
    # of the link now, and a frozen high jitter must not hold the receiver's level down.
    forwarder, sender, output, channel = _sending_pair()
    judged: list[tuple[float, float]] = []
    sender.on_report = lambda fraction_lost, jitter: judged.append((fraction_lost, jitter))
    task = asyncio.create_task(sender.run_forwarding(channel))

    async def report(highest: int, jitter: int) -> None:
        info = RtcpReceiverInfo(
            ssrc=channel.ssrc, fraction_lost=0, packets_lost=0, highest_sequence=highest,
            jitter=jitter, lsr=0, dlsr=0,
        )  # fmt: skip
        await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[info]))

    try:
        await _yield_until(lambda: sender.running, "the sender to start")
        for seq in range(1, 41):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
        offset = struct.unpack_from("!H", output.sent[0], 2)[0] - 1
        await report(offset + 40, jitter=27_000)  # 300 ms at 90 kHz: a burst
        sender.set_paused(True)
        for _ in range(3):
            await report(offset + 40, jitter=27_000)
        assert judged == [(0.0, 0.3)], "only the report that saw new packets is judged"
        assert sender.reports_stale == 3
        # The same stream resumed: reports that see new packets are judged again (the
        # first one after the pause is skipped, as it counts what the pause cut off).
        sender.set_paused(False)
        for seq in range(41, 81):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 41))
        await _yield_until(lambda: len(output.sent) >= 41, "the stream to resume")
        resumed = struct.unpack_from("!H", output.sent[-1], 2)[0]
        await report(resumed, jitter=900)
        await report((resumed + 1) & 0xFFFF, jitter=450)
        assert sender.reports_skipped == 1
        assert judged[1:] == [(0.0, 0.005)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_forwarding_sender_path_forwards_long_streams_across_many_wraps(
    fanout_path: str,
) -> None:
    # The same rewriting, through the subscriber's sender as in production: real
    # SRTP and a real socket, so that with the compiled fan-out C sends them.
    forwarder, sender, _, _ = _sending_pair()
    output = await _UdpSrtpOutput.open()
    channel = RtpSendChannel(sender, VP8, output)
    task = asyncio.create_task(sender.run_forwarding(channel))
    try:
        await _yield_until(lambda: sender.running, "the sender loop to start")
        count, batch, start_seq = 140_000, 256, 60_000
        for first in range(0, count, batch):
            for i in range(first, min(first + batch, count)):
                payload = bytes([0x10, 0x00 if i == 0 else 0x01])  # starts at a keyframe
                forwarder.on_packet(
                    RtpPacket(
                        payload_type=97,
                        sequence_number=(start_seq + i) % 65536,
                        timestamp=(i // 3) * 3000 % 2**32,
                        ssrc=7,
                        payload=payload,
                    )
                )
            expected = min(first + batch, count)
            assert len(output.received(expected)) == expected  # sent synchronously, none lost
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        output.close()
    assert sender.packets_dropped == 0
    headers = [struct.unpack_from("!HL", data, 2) for data in output.received(count)]
    assert len(headers) == count
    for i, ((seq_a, ts_a), (seq_b, ts_b)) in enumerate(itertools.pairwise(headers), start=1):
        assert (seq_b - seq_a) % 65536 == 1, f"sequence gap at packet {i}"
        assert (ts_b - ts_a) % 2**32 == (3000 if i % 3 == 0 else 0), f"timestamp jump at {i}"
    assert channel.packets_sent == sender.packets_queued == count
    if fanout_path == "compiled":
        # The first packet (the keyframe that starts the stream) goes through Python,
        # which connects the compiled stream; C sends every other one.
        assert sender.fast_stream is not None
        assert sender.fast_stream.fast_sent == count - 1


async def test_compiled_fanout_hands_back_what_it_does_not_handle(fanout_path: str) -> None:
    # An oversized packet and a closed transport: the Python path's rules apply
    # (drop it; end the sender), whichever path was sending.
    forwarder, sender, _, _ = _sending_pair()
    output = await _UdpSrtpOutput.open()
    channel = RtpSendChannel(sender, VP8, output)
    task = asyncio.create_task(sender.run_forwarding(channel))
    try:
        await _yield_until(lambda: sender.running, "the sender loop to start")
        for seq in range(1, 11):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
        huge = _vp8(11, keyframe=False)
        huge.payload = huge.payload + bytes(1500)  # a publisher's oversized packet
        forwarder.on_packet(huge)
        forwarder.on_packet(_vp8(12, keyframe=False))
        received = output.received(11)
        assert len(received) == 11
        assert sender.packets_dropped == 1
        sent = [struct.unpack_from("!H", data, 2)[0] for data in received]
        # As in the Python path: the dropped packet's number was taken (a loss to the receiver).
        assert [(b - a) % 65536 for a, b in itertools.pairwise(sent)] == [1] * 9 + [2]
        # The subscriber's transport closes: the next packet is not sent, the sender ends.
        output.transport.close()
        forwarder.on_packet(_vp8(13, keyframe=False))
        assert not sender.running
        assert sender.packets_queued == 11
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        output.close()
    if fanout_path == "compiled":
        assert sender.fast_stream is not None
        assert sender.fast_stream.fast_sent == 10  # all but the first (and the two handed back)
        assert not sender.fast_stream.connected  # it let go of the closed socket


def test_ntp_time_matches_aiortc_clock() -> None:
    ours = ntp_time()
    theirs = aiortc_clock.current_ntp_time()
    assert abs(ours - theirs) < 2**32 // 10  # within 100 ms, same epoch and format


async def test_forwarding_reads_the_clock_once_per_packet_for_all_subscribers(
    fanout_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[float] = []

    def counting_clock() -> float:
        reads.append(time.time())
        return reads[-1]

    def forbidden_clock() -> int:
        raise AssertionError("the forwarding path read another clock")

    import server.media.aiortc_internals as internals
    import server.media.track_forwarder as track_forwarder

    monkeypatch.setattr(track_forwarder, "_wall_clock", counting_clock)
    monkeypatch.setattr(internals, "ntp_time", forbidden_clock)
    monkeypatch.setattr(aiortc_clock, "current_ntp_time", forbidden_clock)
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                )
            ]
        )
    )
    forwarder, sender, _, _ = _sending_pair(extensions)
    outputs = [await _UdpSrtpOutput.open() for _ in range(3)]
    channel = RtpSendChannel(sender, VP8, outputs[0])
    # Two more subscribers of the same forwarder (with the compiled fan-out: one C call).
    others = []
    for output in outputs[1:]:
        other = ForwardingSender(forwarder, _Transport(), queue_size=512)  # type: ignore[arg-type]
        setattr(other, SENDER_ATTRIBUTES["header_extensions_map"], extensions)
        others.append((other, RtpSendChannel(other, VP8, output)))
    tasks = [asyncio.create_task(s.run_forwarding(c)) for s, c in [(sender, channel), *others]]
    try:
        await _yield_until(
            lambda: sender.running and all(s.running for s, _ in others), "the senders to start"
        )
        reads.clear()
        for seq in range(1, 51):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
            # The sender report's NTP time is the value abs-send-time was made of.
            ntp = getattr(sender, SENDER_ATTRIBUTES["ntp_timestamp"])
            sent = RtpPacket.parse(outputs[0].received(seq)[-1], extensions)
            assert sent.extensions.abs_send_time == (ntp >> 14) & 0xFFFFFF
            assert getattr(sender, SENDER_ATTRIBUTES["rtp_timestamp"]) == sent.timestamp
            assert getattr(sender, SENDER_ATTRIBUTES["packet_count"]) == seq
            assert getattr(sender, SENDER_ATTRIBUTES["octet_count"]) == 2 * seq
        others_received = [output.received(50) for output in outputs[1:]]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for output in outputs:
            output.close()
    # The NACK history holds every packet sent, and gives back exactly what was sent.
    for (_, other_channel), received in zip(others, others_received, strict=True):
        assert len(received) == 50
        assert len(other_channel.sent_sequence_numbers()) == 50
        last = RtpPacket.parse(received[-1], extensions)
        again = other_channel.packet_for_retransmission(last.sequence_number)
        assert again is not None
        assert again.serialize(extensions) == received[-1]
    if fanout_path == "compiled":
        assert all(s.fast_stream is not None for s, _ in [(sender, channel), *others])
        assert [s.fast_stream.fast_sent for s, _ in others] == [49, 49]  # type: ignore[union-attr]
    assert len(reads) == 50, "one clock read per received packet, whatever the subscribers"
    expected_ntp = int((reads[-1] + 2_208_988_800) * 2**32)
    assert getattr(sender, SENDER_ATTRIBUTES["ntp_timestamp"]) == expected_ntp
    assert abs(expected_ntp - ntp_time()) < 2**32  # the NTP epoch and format: within a second


class _FailingSink(_Sink):
    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        super().on_packet(packet, is_keyframe)
        raise RuntimeError("recorder disk full")


def test_a_failing_sink_is_detached_and_the_others_keep_receiving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def no_pli(ssrc: int) -> None:
        return None

    forwarder = TrackForwarder(
        track_id="p-video-1", participant_id="p", kind="video", codec=VP8, send_pli=no_pli
    )
    first, failing, last = _Sink(), _FailingSink(), _Sink()
    for sink in (first, failing, last):
        forwarder.attach(sink)
    with caplog.at_level("ERROR", logger="server.media.track_forwarder"):
        for seq in range(1, 6):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))  # must not raise
    expected = [(1, True), (2, False), (3, False), (4, False), (5, False)]
    assert first.packets == expected
    assert last.packets == expected
    assert failing.packets == [(1, True)]  # detached at its first failure ...
    assert failing.ended  # ... and told, so that it stops waiting
    assert forwarder.sinks == (first, last)
    assert forwarder.sinks_failed == 1
    assert len([r for r in caplog.records if "failed; detached" in r.getMessage()]) == 1
    assert not first.ended and not last.ended


def test_packet_tap_never_lets_a_handler_exception_into_aiortc() -> None:
    def broken(packet: RtpPacket) -> None:
        raise ValueError("bug")

    tap = PacketTap(broken)
    for seq in range(3):
        assert tap.add(_vp8(seq, keyframe=False)) == (False, None)
    assert tap.errors == 3


def _extensions_map(*uris: str) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in enumerate(uris, 1)
            ]
        )
    )
    return extensions


@pytest.mark.parametrize(
    ("extension", "uris", "value", "field"),
    [
        (
            "abs_send_time",
            ("urn:ietf:params:rtp-hdrext:sdes:mid", ABS_SEND_TIME),
            0xABCDEF,
            lambda p: p.extensions.abs_send_time,
        ),
        (
            "audio_level",
            ("urn:ietf:params:rtp-hdrext:sdes:mid", AUDIO_LEVEL),
            0x80 | 42,
            lambda p: p.extensions.audio_level,
        ),
        ("abs_send_time", ("urn:ietf:params:rtp-hdrext:sdes:mid",), 0x123456, None),
        ("audio_level", (), 17, None),
    ],
)
def test_outgoing_header_is_what_aiortc_would_serialize(
    extension: str, uris: tuple[str, ...], value: int, field: object
) -> None:
    extensions = _extensions_map(*uris)
    header = OutgoingHeader(
        ssrc=0x11223344, payload_type=97, mid="3", extensions_map=extensions, extension=extension
    )
    payload = b"\x10\x00payload"
    for marker, seq, ts in ((1, 65535, 2**32 - 1), (0, 0, 0), (1, 4242, 90000)):
        data = bytes(header.build(marker, seq, ts, value)) + payload
        # The same packet through aiortc's own serializer.
        reference = RtpPacket(
            payload_type=97, marker=marker, sequence_number=seq, timestamp=ts, ssrc=0x11223344
        )
        reference.payload = payload
        reference.extensions.mid = "3"
        if extension == "abs_send_time":
            reference.extensions.abs_send_time = value
        else:
            reference.extensions.audio_level = (bool(value & 0x80), value & 0x7F)
        assert data == reference.serialize(extensions)
        parsed = RtpPacket.parse(data, extensions)
        assert (parsed.marker, parsed.sequence_number, parsed.timestamp) == (marker, seq, ts)
        if field is not None:
            expected = value if extension == "abs_send_time" else (True, 42)
            assert field(parsed) == expected  # type: ignore[operator]


def test_a_packet_too_long_to_encrypt_is_dropped_and_the_stream_goes_on() -> None:
    from pylibsrtp import Policy, Session

    from server.media.aiortc_internals import SrtpProtector

    class _EncryptingOutput(_RecordingOutput):
        def __init__(self) -> None:
            super().__init__()
            policy = Policy(key=bytes(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
            self._protector = SrtpProtector(Session(policy=policy))

        def send(self, header: bytes | bytearray, payload: bytes) -> int:
            self._protector.protect(header, payload)  # raises ValueError if too long
            return super().send(header, payload)

    async def run() -> None:
        forwarder, sender, _, _ = _sending_pair()
        output = _EncryptingOutput()
        task = asyncio.create_task(sender.run_forwarding(RtpSendChannel(sender, VP8, output)))
        try:
            await _yield_until(lambda: sender.running, "the sender to start")
            forwarder.on_packet(_vp8(1, keyframe=True))
            huge = _vp8(2, keyframe=False)
            huge.payload = huge.payload + bytes(1500)  # a publisher's oversized packet
            forwarder.on_packet(huge)
            forwarder.on_packet(_vp8(3, keyframe=False))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert len(output.sent) == 2
        assert sender.packets_dropped == 1
        assert forwarder.sinks == ()  # detached by the cancellation above, not by a failure
        assert forwarder.sinks_failed == 0

    asyncio.run(run())


@pytest.mark.parametrize("packets", [True, False], ids=["packets", "numbers-only"])
def test_the_compiled_sent_history_answers_what_the_python_one_does(packets: bool) -> None:
    """``_fanout.SentHistory`` (written for each copy the fan-out sends; read for each
    receiver report of each forwarded track and each NACK) gives what the Python
    reference gives: over empty slots, slots a newer or an older packet holds, skipped
    numbers, sequence wraps, headers longer than a slot's own room, and a clear. A
    history of the numbers only (a stream that cannot be NACKed) counts the same and
    answers no NACK."""
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    from server.media._fanout import SentHistory as CompiledSentHistory

    rng = random.Random(7)
    for size in (1, 8, 64, SENT_HISTORY_SIZE):
        python = SentHistory(size, packets=packets)
        compiled = CompiledSentHistory(size, packets=packets)
        assert len(python) == len(compiled) == size
        assert python.keeps_packets is compiled.keeps_packets is packets
        number = rng.randrange(0, 3 * 65536)  # extended: past several wraps
        for step in range(3000):
            number += 1 if rng.random() < 0.9 else rng.randrange(2, 40)  # skipped numbers
            if rng.random() < 0.05:
                continue  # never sent
            extension = bytes(rng.choice((0, 8, 60)))  # 60: past the slot's room
            header = bytes([0x80, 96]) + (number & 0xFFFF).to_bytes(2, "big") + bytes(8) + extension
            payload = rng.randbytes(rng.randrange(0, 30))
            python.put(header, payload)
            compiled.put(header, payload)
            first = number - rng.randrange(0, 2 * size + 3)
            last = number - rng.randrange(0, 3)
            counted = compiled.sent_among(first, last)
            assert counted == python.sent_among(first, last), (size, first, last)
            asked = (number - rng.randrange(0, 2 * size)) & 0xFFFF
            assert compiled.get(asked) == python.get(asked), (size, asked)
            if step == 1500:
                python.clear()
                compiled.clear()
        assert compiled.sequence_numbers() == python.sequence_numbers()
        assert len(compiled.sequence_numbers()) > 0
        newest = bytes([0x80, 96]) + ((number + 1) & 0xFFFF).to_bytes(2, "big") + bytes(8)
        compiled.put(newest, b"newest")
        assert compiled.get((number + 1) & 0xFFFF) == ((newest, b"newest") if packets else None)
        assert compiled.sent_among(number + 1, number + 1) == (1, 1)
    assert CompiledSentHistory(8).sent_among(5, 10) == SentHistory(8).sent_among(5, 10) == (0, 6)


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "compiled"])
def test_a_sent_history_refuses_what_is_not_a_packet(compiled: bool) -> None:
    if compiled:
        require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
        from server.media._fanout import SentHistory as CompiledSentHistory

        history: SentHistoryLike = CompiledSentHistory(16)
    else:
        history = SentHistory(16)
    with pytest.raises(ValueError, match="at least 4 bytes"):
        history.put(b"\x80\x60\x00", b"payload")  # no sequence number
    if compiled:  # the compiled one keeps bytes only (the reference does not check types)
        with pytest.raises(TypeError):
            history.put("not bytes", b"")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            history.put(bytes(12), bytearray(3))  # type: ignore[arg-type]
    assert history.sequence_numbers() == []
    for size in (0, 3, 1 << 17):
        with pytest.raises(ValueError, match="power of two"):
            CompiledSentHistory(size) if compiled else SentHistory(size)


async def test_a_paused_subscriber_costs_the_compiled_fanout_no_call_into_python(
    fanout_path: str,
) -> None:
    """A subscriber paused by last-N receives nothing; the compiled fan-out drops its
    copies itself instead of handing each packet back to the Python sender (which only
    dropped it: 13 000 calls a second at 9 venues, 27 observers and last-N 4)."""
    forwarder, sender, _, _ = _sending_pair()
    output = await _UdpSrtpOutput.open()
    channel = RtpSendChannel(sender, VP8, output)
    task = asyncio.create_task(sender.run_forwarding(channel))
    handed_back: list[int] = []
    on_packet = sender.on_packet

    def counting_on_packet(packet: RtpPacket, is_keyframe: bool) -> None:
        handed_back.append(packet.sequence_number)
        on_packet(packet, is_keyframe)

    try:
        await _yield_until(lambda: sender.running, "the sender loop to start")
        for seq in range(1, 6):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 1))
        assert len(output.received(5)) == 5
        sender.on_packet = counting_on_packet  # type: ignore[method-assign]
        sender.set_paused(True)
        for seq in range(6, 21):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 10))
        if fanout_path == "compiled":
            assert sender.fast_stream is not None and sender.fast_stream.silent
            assert handed_back == [], "the fan-out dropped the paused copies itself"
        # Resumed: the next keyframe restarts the stream, and nothing sent while paused.
        sender.set_paused(False)
        for seq in range(21, 26):
            forwarder.on_packet(_vp8(seq, keyframe=seq == 22))
        # 1..5, then 22..25 (21 waited for the keyframe): nothing of 6..20 went out.
        assert len(output.received(9)) == 9
        assert channel.packets_sent == 9
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        output.close()


def _sized_vp8(seq: int, size: int) -> RtpPacket:
    """A VP8 delta packet whose payload is ``size`` bytes, marked by its number."""
    payload = bytes([0x00, 0x01]) + bytes([seq & 0xFF]) * (size - 2)
    return RtpPacket(payload_type=97, sequence_number=seq, timestamp=seq, ssrc=7, payload=payload)


@contextlib.asynccontextmanager
async def _forwarding_over_udp(
    output_type: type[_UdpSrtpOutput] = _UdpSrtpOutput,
) -> AsyncIterator[tuple[TrackForwarder, ForwardingSender, _UdpSrtpOutput]]:
    """A sender forwarding to a real UDP socket, its loop running, and a first keyframe
    (packet 1) sent through Python, which connects its compiled stream."""
    forwarder, sender, _, _ = _sending_pair()
    output = await output_type.open()
    task = asyncio.create_task(sender.run_forwarding(RtpSendChannel(sender, VP8, output)))
    try:
        await _yield_until(lambda: sender.running, "the sender loop to start")
        forwarder.on_packet(_vp8(1, keyframe=True))
        yield forwarder, sender, output
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        output.close()


def _consecutive(received: list[bytes]) -> bool:
    """Whether the RTP packets' sequence numbers follow one another (mod 2**16)."""
    numbers = [struct.unpack_from("!H", data, 2)[0] for data in received]
    return all((b - a) % 65536 == 1 for a, b in itertools.pairwise(numbers))


@pytest.mark.parametrize("fanout_path", ["compiled"], indirect=True)
async def test_a_batched_burst_reaches_the_subscriber_whole_and_in_order_in_gso_runs(
    fanout_path: str,
) -> None:
    """Copies queued while a batch is open (as the ingest's reader opens one around a
    socket's datagrams) go out at its end: a subscriber's equal-sized copies in one UDP
    GSO send, a run broken where the size grows, every copy SRTP-valid and in order."""
    # A frame of nine packets, the last shorter (one run); then a frame cut into sizes
    # one byte apart, larger first, as libwebrtc's packetizer cuts (two runs: the first
    # ends with the first shorter packet, the rest is the second).
    sizes = [1100] * 8 + [700] + [1001] * 4 + [1000] * 5
    async with _forwarding_over_udp() as (forwarder, sender, output):
        assert len(output.received(1)) == 1
        before = fanout.gso_stats()
        fanout.open_batch()
        for offset, size in enumerate(sizes):
            forwarder.on_packet(_sized_vp8(2 + offset, size))
        assert len(output.received_now()) == 1, "queued: nothing sent before the batch ends"
        fanout.send_batch()
        received = output.received(1 + len(sizes))
        after = fanout.gso_stats()
    assert len(received) == 1 + len(sizes)
    assert _consecutive(received)
    header = len(received[0]) - 2  # the keyframe's payload is two bytes
    for offset, (data, size) in enumerate(zip(received[1:], sizes, strict=True)):
        assert len(data) == header + size
        assert data[header + 2 :] == bytes([(2 + offset) & 0xFF]) * (size - 2)
    assert after["sends"] - before["sends"] == 3
    assert after["segments"] - before["segments"] == len(sizes)
    assert after["handed_back"] == before["handed_back"]
    assert sender.fast_stream is not None
    assert sender.fast_stream.fast_sent == len(sizes)


@pytest.mark.parametrize("fanout_path", ["compiled"], indirect=True)
async def test_batched_copies_the_kernel_refuses_go_through_asyncio_in_order(
    fanout_path: str,
) -> None:
    """A batched send the kernel refuses (here: the stream's socket cannot send) is not
    lost: each copy goes to the transport, as a refused sendto's packet does, and the
    stream stays on the Python path until that has drained."""

    class RefusingOutput(_UdpSrtpOutput):
        # The compiled stream sends on a socket that refuses (an unconnected TCP
        # socket: ENOTCONN), the transport's own socket works.
        refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

        def fast_path(self) -> dict[str, object]:
            return {**super().fast_path(), "fd": self.refusing.fileno()}

    try:
        async with _forwarding_over_udp(RefusingOutput) as (forwarder, sender, output):
            before = fanout.gso_stats()
            fanout.open_batch()
            for seq in range(2, 7):
                forwarder.on_packet(_sized_vp8(seq, 900))
            fanout.send_batch()
            assert sender.fast_stream is not None
            assert not sender.fast_stream.enabled
            received = output.received(6)
            after = fanout.gso_stats()
    finally:
        RefusingOutput.refusing.close()
    assert len(received) == 6
    assert _consecutive(received)
    assert after["handed_back"] - before["handed_back"] == 5
    assert after["enabled"], "a refused send is not the kernel lacking GSO"


#: Linux's SO_NO_CHECK: the socket sends UDP without checksums, which a GSO send cannot.
_SO_NO_CHECK = 11


@pytest.mark.parametrize("fanout_path", ["compiled"], indirect=True)
async def test_a_destination_that_refuses_gso_gets_its_copies_one_at_a_time(
    fanout_path: str,
) -> None:
    """A GSO send refused as invalid for its destination (here a socket without UDP
    checksums; elsewhere a route with a smaller MTU) is sent again one datagram at a
    time, and so is that destination's next burst; batching stays on for the others."""

    class NoChecksumOutput(_UdpSrtpOutput):
        def fast_path(self) -> dict[str, object]:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, _SO_NO_CHECK, 1)
            return super().fast_path()

    async with _forwarding_over_udp(NoChecksumOutput) as (forwarder, _, output):
        before = fanout.gso_stats()
        for burst in range(2):
            fanout.open_batch()
            for offset in range(5):
                forwarder.on_packet(_sized_vp8(2 + 5 * burst + offset, 900))
            fanout.send_batch()
        received = output.received(11)
        after = fanout.gso_stats()
    assert len(received) == 11
    assert _consecutive(received)
    assert after["refused"] - before["refused"] == 1, "tried once, then one at a time"
    assert after["sends"] == before["sends"]
    assert after["handed_back"] == before["handed_back"]
    assert after["enabled"], "batching stays on for the other destinations"
