"""Receiving a publisher: the direct ingest (server/media/ingest.py) against aiortc's path.

A real aiortc publisher connects to the room; its tracks send nothing by
themselves, and the test sends crafted RTP through the publisher's own SRTP
session and ICE pair, so that each case (sequence wrap, loss and NACK,
duplicates, late packets, keyframes, audio level, garbage) is exact. Every
case runs on both ingest paths (``ingest_path``) and must give the same result.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPacket, RtcpRrPacket, RtcpRtpfbPacket, RtpPacket, wrap_rtx
from media_testkit import (
    LOOPBACK,
    MediaTestClient,
    RoomHarness,
    client_configuration,
    require_compiled,
)

from server.media import fanout, ingest

if ingest.compiled_available():
    from server.media import _ingest
from server.media.active_speaker import SILENCE_DBOV, AudioLevelMeter
from server.media.aiortc_internals import (
    COMPILED_INGEST_ERROR,
    ICE_CONNECTION_ATTRIBUTE,
    SENDER_ATTRIBUTES,
    DirectIngest,
    TransportReceiverReports,
    gather_only_on,
    received_counts,
)
from server.media.publish_connection import PublishConnection
from server.media.rtp_header import audio_level_byte
from server.media.track_forwarder import TrackForwarder
from server.metrics.server_metrics import ServerMetrics

#: A VP8 payload that starts a 320x240 keyframe (RFC 7741 descriptor S=1, then the
#: RFC 6386 frame tag, start code and size), and one that continues a frame.
VP8_KEYFRAME = bytes([0x10, 0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]) + bytes(40)
VP8_DELTA = bytes([0x00, 0x01]) + bytes(40)


@pytest.fixture(params=["compiled", "direct", "aiortc"])
def ingest_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with the direct ingest's compiled steady state (server/media/_ingest.c),
    with the direct ingest all in Python, and with aiortc's own receive path.

    Under CI=true a missing extension fails the test rather than skip it (as the
    compiled fan-out: scripts/bootstrap builds it)."""
    if request.param == "compiled":
        require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
    monkeypatch.setattr(ingest, "enabled", request.param != "aiortc")
    monkeypatch.setattr(ingest, "compiled", request.param == "compiled")
    return str(request.param)


class SilentTrack(MediaStreamTrack):
    """A track that never yields a frame: aiortc's sender stays quiet, the test sends."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> None:  # type: ignore[override]
        await asyncio.Event().wait()


@dataclass
class Recorder:
    """A sink on a forwarder (as the recorder is): what it was given, in order."""

    packets: list[tuple[int, bool]] = field(default_factory=list)

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        self.packets.append((packet.sequence_number, is_keyframe))

    def on_forwarder_ended(self) -> None:
        pass


@dataclass
class Publisher:
    """The publisher's side: its connection, senders, and the RTCP it received."""

    pc: RTCPeerConnection
    senders: dict[str, RTCRtpSender]
    nacked: list[int] = field(default_factory=list)
    remb: list[int] = field(default_factory=list)

    @property
    def dtls(self) -> RTCDtlsTransport:
        return self.senders["video"].transport

    def ssrc(self, kind: str) -> int:
        return int(getattr(self.senders[kind], SENDER_ATTRIBUTES["ssrc"]))

    async def send(self, kind: str, packet: RtpPacket) -> None:
        """SRTP-protect ``packet`` with the publisher's session and send it."""
        sender = self.senders[kind]
        extensions = getattr(sender, SENDER_ATTRIBUTES["header_extensions_map"])
        await self.dtls._send_rtp(packet.serialize(extensions))

    def protect(self, kind: str, packet: RtpPacket) -> bytes:
        """``packet`` SRTP-protected with the publisher's session (to send twice)."""
        extensions = getattr(self.senders[kind], SENDER_ATTRIBUTES["header_extensions_map"])
        protected: bytes = self.dtls._tx_srtp.protect(packet.serialize(extensions))
        return protected

    async def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is on the publisher's ICE pair (no SRTP)."""
        await self.dtls.transport._send(data)


@pytest.fixture
async def publisher(harness: RoomHarness, ingest_path: str) -> AsyncIterator[Publisher]:
    """A connected publisher with a silent audio and video track."""
    await harness.room.add_participant("pub", can_publish=True)
    pc = RTCPeerConnection(client_configuration())
    senders = {}
    for kind in ("audio", "video"):
        senders[kind] = pc.addTransceiver(SilentTrack(kind), direction="sendonly").sender
    publisher = Publisher(pc=pc, senders=senders)
    video = senders["video"]
    handle_rtcp = video._handle_rtcp_packet

    async def on_rtcp(packet: object) -> None:
        # What the publisher's browser would act on: NACKs name lost packets.
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
            publisher.nacked.extend(packet.lost)
        await handle_rtcp(packet)

    video._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]
    with gather_only_on(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    answer = await harness.room.publish("pub", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def connected() -> bool:
        server_pc = _connection(harness)._pc
        return (
            pc.connectionState == "connected"
            and server_pc is not None
            and server_pc.connectionState == "connected"
            and len(_forwarders(harness)) == 2
        )

    await harness.wait_until(connected, "the publisher to connect")
    try:
        yield publisher
    finally:
        await pc.close()


def _connection(harness: RoomHarness) -> PublishConnection:
    return harness.room._participants["pub"].publish


def _forwarders(harness: RoomHarness) -> dict[str, TrackForwarder]:
    inbound = _connection(harness)._inbound.values()
    return {i.forwarder.kind: i.forwarder for i in inbound if i.forwarder is not None}


def _ingests(harness: RoomHarness) -> list[DirectIngest]:
    pc = _connection(harness)._pc
    assert pc is not None
    return ingest.install(pc) if ingest.enabled else []


def _video(
    harness: RoomHarness, publisher: Publisher, seq: int, payload: bytes = VP8_DELTA
) -> RtpPacket:
    return RtpPacket(
        payload_type=_forwarders(harness)["video"].codec.payloadType,
        sequence_number=seq % 65536,
        timestamp=seq * 3000,
        ssrc=publisher.ssrc("video"),
        payload=payload,
    )


def _audio(
    harness: RoomHarness, publisher: Publisher, seq: int, level: int | None = None
) -> RtpPacket:
    """An Opus packet (one silent 20 ms frame), with an RFC 6464 level if ``level``."""
    packet = RtpPacket(
        payload_type=_forwarders(harness)["audio"].codec.payloadType,
        sequence_number=seq,
        timestamp=seq * 960,
        ssrc=publisher.ssrc("audio"),
        payload=b"\xfc" + bytes(20),
    )
    if level is not None:
        packet.extensions.audio_level = (True, level)
    return packet


async def test_video_packets_reach_the_sinks_in_arrival_order(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """Sequence wrap, losses answered by NACKs, a late packet, a duplicate, a retransmission
    on the RTX stream, a keyframe."""
    video = _forwarders(harness)["video"]
    recorder = Recorder()
    video.attach(recorder)
    receiver = next(
        i.transceiver.receiver
        for i in _connection(harness)._inbound.values()
        if i.forwarder is video
    )
    start = 65533
    # a keyframe, then across the wrap 65535 -> 0; 2 is lost for now
    sent = [(start, VP8_KEYFRAME), (65534, VP8_DELTA), (65535, VP8_DELTA), (0, VP8_DELTA)]
    sent += [(1, VP8_DELTA), (3, VP8_DELTA)]
    for seq, payload in sent:
        await publisher.send("video", _video(harness, publisher, seq, payload))
    await harness.wait_until(lambda: len(recorder.packets) == len(sent), "the first packets")
    # The gap (2) is asked for: a NACK reaches the publisher.
    await harness.wait_until(lambda: 2 in publisher.nacked, "a NACK for the lost packet")
    # The retransmission arrives late; then a duplicate of 3, which SRTP's replay
    # protection drops (the same packet index twice); then 4.
    await publisher.send("video", _video(harness, publisher, 2))
    await publisher.send("video", _video(harness, publisher, 3))
    await publisher.send("video", _video(harness, publisher, 4))
    await harness.wait_until(lambda: (4, False) in recorder.packets, "the next packet")

    # 5 is lost and comes back as a retransmission on the RTX stream (RFC 4588),
    # which the receiver unwraps to the original packet.
    await publisher.send("video", _video(harness, publisher, 6))
    await harness.wait_until(lambda: 5 in publisher.nacked, "a NACK for 5")
    rtx_pt = int(re.findall(r"a=rtpmap:(\d+) rtx/90000", publisher.pc.remoteDescription.sdp)[0])
    rtx = wrap_rtx(_video(harness, publisher, 5), rtx_pt, 1, publisher.senders["video"]._rtx_ssrc)
    await publisher.send("video", rtx)
    await harness.wait_until(lambda: (5, False) in recorder.packets, "the retransmitted packet")

    assert recorder.packets == [
        (65533, True),
        (65534, False),
        (65535, False),
        (0, False),
        (1, False),
        (3, False),
        (2, False),
        (4, False),
        (6, False),
        (5, False),
    ]
    assert video.keyframes_received == 1
    assert video.frame_size == (320, 240)
    assert video.packets_received == 10
    # The receiver's statistics (its RTCP receiver reports, the uplink check), per
    # SSRC as aiortc keeps them: 65533..6 across the wrap, 5 missing on the media
    # SSRC (it came on the RTX SSRC, counted there: 1 of 1).
    assert received_counts(receiver) == (10 + 1, 9 + 1)
    # The receiver's active sources (getSynchronizationSources): both SSRCs, just now.
    sources = {s.source: s.timestamp for s in receiver.getSynchronizationSources()}
    assert set(sources) == {publisher.ssrc("video"), publisher.senders["video"]._rtx_ssrc}
    assert datetime.now(UTC) - max(sources.values()) < timedelta(seconds=5)
    for direct in _ingests(harness):
        assert direct.packets == 10, "the direct ingest handled every packet"
        assert direct.errors == 0


@pytest.mark.parametrize("ingest_path", ["compiled", "direct"], indirect=True)
async def test_rtcp_the_ingest_sends_goes_out_at_once(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """A NACK, PLI or REMB send (aiortc's coroutine, which never waits) runs to its end
    where the ingest decides it, without a task; one that waits after all finishes in
    a task; one that fails is logged and costs the publisher nothing."""
    (direct, *_) = _ingests(harness)
    done: list[str] = []

    async def sends() -> None:
        done.append("sent")

    async def waits() -> None:
        await asyncio.sleep(0)
        done.append("waited")

    async def fails() -> None:
        raise ConnectionError("the transport closed")

    direct._send_now(sends())
    assert done == ["sent"] and not direct._tasks, "sent in place"
    direct._send_now(fails())
    assert direct.errors == 0 and not direct._tasks
    direct._send_now(waits())
    assert direct.rtcp_deferred == 1 and done == ["sent"]
    await harness.wait_until(lambda: done == ["sent", "waited"], "the send that waited")
    # A real one: the NACK for a gap reaches the publisher.
    for seq in (10, 11, 13):
        await publisher.send("video", _video(harness, publisher, seq, VP8_KEYFRAME))
    await harness.wait_until(lambda: 12 in publisher.nacked, "a NACK for 12")
    assert direct.errors == 0


@pytest.mark.parametrize("ingest_path", ["compiled", "direct"], indirect=True)
async def test_the_publishers_receivers_report_together_on_one_timer(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """The receiver reports for a publisher's audio and video go out in one compound
    datagram per interval, from one timer (no task per receiver waking every second),
    say what was received, and stop with the publisher."""
    datagrams: list[list[RtcpRrPacket]] = []
    handle_rtcp_data = publisher.dtls._handle_rtcp_data

    async def on_rtcp_data(data: bytes) -> None:
        # The publisher's side: one call per SRTCP datagram, decrypted.
        reports = [p for p in RtcpPacket.parse(data) if isinstance(p, RtcpRrPacket)]
        if reports:
            datagrams.append(reports)
        await handle_rtcp_data(data)

    publisher.dtls._handle_rtcp_data = on_rtcp_data  # type: ignore[method-assign]
    await publisher.send("video", _video(harness, publisher, 700, VP8_KEYFRAME))
    await publisher.send("audio", _audio(harness, publisher, 300))
    await harness.wait_until(lambda: len(datagrams) >= 2, "two intervals of reports")
    blocks = {r.ssrc: r.highest_sequence for rr in datagrams[-1] for r in rr.reports}
    assert blocks == {publisher.ssrc("video"): 700, publisher.ssrc("audio"): 300}
    # aiortc's per-receiver loops only wait; one timer reports for the transport.
    server_pc = _connection(harness)._pc
    assert server_pc is not None
    names = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]  # type: ignore[union-attr]
    assert names.count("report_with_transport") == 2
    assert "RTCRtpReceiver._run_rtcp" not in names
    (transport,) = {t.receiver.transport for t in server_pc.getTransceivers()}
    reporter = TransportReceiverReports.of(transport)
    assert reporter.running and reporter.reports_sent == 2 * reporter.datagrams_sent
    # Leaving stops the receivers (their stop() waits for the RTCP task's end) and the timer.
    await harness.room.remove_participant("pub")
    assert not reporter.running
    assert "report_with_transport" not in [
        t.get_coro().__qualname__  # type: ignore[union-attr]
        for t in asyncio.all_tasks()
        if not t.done()
    ]


async def test_audio_level_reaches_the_speaker_detector(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """Each audio packet's RFC 6464 level moves the publisher's meter in the room's speaker
    detector, timed by the detector's clock."""
    audio = _forwarders(harness)["audio"]
    meter = audio._audio_level
    assert meter is not None
    started = time.monotonic()
    # -30 dBov: the smoothed level rises from silence.
    await publisher.send("audio", _audio(harness, publisher, 100, level=30))
    await harness.wait_until(lambda: meter.smoothed > SILENCE_DBOV, "the first level")
    after_speech = meter.smoothed
    assert SILENCE_DBOV < after_speech <= -30.0
    assert started <= meter.last_update <= time.monotonic()
    assert harness.room.audio_levels()["pub"] == round(after_speech, 1)
    await publisher.send("audio", _audio(harness, publisher, 101, level=127))  # it falls back
    await harness.wait_until(lambda: meter.smoothed < after_speech, "the second level")
    assert audio.extension_value == audio_level_byte((True, 127))


async def test_a_meter_of_another_class_gets_every_level(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """The compiled forwarding runs AudioLevelMeter.observe itself only for that class:
    a subclass's own observe is called, with the levels in order."""
    audio = _forwarders(harness)["audio"]
    levels: list[int] = []

    class RecordingMeter(AudioLevelMeter):
        __slots__ = ()

        def observe(self, level: int, now: float) -> None:
            levels.append(level)

    audio._audio_level = RecordingMeter(0.3, time.monotonic())
    for seq, level in ((100, 30), (101, 127)):
        await publisher.send("audio", _audio(harness, publisher, seq, level=level))
    await harness.wait_until(lambda: len(levels) == 2, "both audio levels")
    assert levels == [30, 127]


async def test_garbage_is_dropped_and_the_publisher_carries_on(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """Unauthenticated, replayed, truncated and oversized datagrams harm nothing."""
    video = _forwarders(harness)["video"]
    recorder = Recorder()
    video.attach(recorder)
    first = publisher.protect("video", _video(harness, publisher, 10, VP8_KEYFRAME))
    await publisher.send_raw(first)
    await harness.wait_until(lambda: len(recorder.packets) == 1, "the first packet")

    good = _video(harness, publisher, 11)
    forged = good.serialize() + bytes(10)  # an RTP header, a made-up authentication tag
    await publisher.send_raw(forged)
    await publisher.send_raw(b"\x80\x60\x00")  # shorter than an RTP header
    await publisher.send_raw(b"\x80\x60" + os.urandom(1400))  # not authentic
    # Authentic, but of no stream the publisher announced (SSRC and payload type).
    stray = _video(harness, publisher, 11)
    stray.ssrc, stray.payload_type = stray.ssrc ^ 0xFFFF, 50
    await publisher.send("video", stray)
    # A replay: libsrtp refuses a packet index it has seen.
    await publisher.send_raw(first)
    await publisher.send("video", _video(harness, publisher, 12))
    await harness.wait_until(lambda: len(recorder.packets) >= 2, "the next good packet")
    assert recorder.packets == [(10, True), (12, False)]
    assert video.packets_received == 2
    assert _connection(harness)._pc is not None
    assert _connection(harness)._pc.connectionState == "connected"
    for direct in _ingests(harness):
        assert direct.errors == 0


async def test_the_direct_ingest_takes_the_packets_of_a_real_publisher(
    harness: RoomHarness, ingest_path: str
) -> None:
    """With real media: what aiortc's receive task used to do, the callback does."""
    alice = harness.client("alice")
    bob = harness.client("bob", video=True, audio=True)
    await alice.join()
    await bob.join(publish=False)
    await harness.wait_until(
        lambda: bob.frames_from("alice", "video") >= 10 and bob.frames_from("alice", "audio") >= 10,
        "bob to decode alice's audio and video",
    )
    connection = harness.room._participants["alice"].publish
    taps = sum(i.tap.packets for i in connection._inbound.values())
    assert connection._pc is not None
    (inbound, *_) = connection._inbound.values()
    ice = getattr(inbound.transceiver.receiver.transport.transport, ICE_CONNECTION_ATTRIBUTE)
    if ingest_path != "aiortc":
        (direct,) = ingest.install(connection._pc)
        if ingest_path == "compiled":
            assert ice.data_received == direct.compiled.receive
            # The steady state runs in C: only a stream's first packet (and any after
            # a gap) goes to Python.
            await harness.wait_until(lambda: direct.packets >= 200, "200 packets")
            assert direct.compiled.fallbacks < direct.packets * 0.05
            # ... and so does the forwarding to bob (TrackForwarder.on_packet's steady
            # state, the compiled fan-out): only keyframes went through the tap's method.
            taps = sum(i.tap.packets for i in connection._inbound.values())
            keyframes = sum(
                i.forwarder.keyframes_received for i in connection._inbound.values() if i.forwarder
            )
            assert direct.compiled.forwarded >= taps - keyframes - direct.compiled.fallbacks
            assert bob.frames_from("alice", "video") >= 10
            # The socket is read by the compiled reader, not asyncio's _read_ready.
            pair = ice._nominated[1]
            fd = pair.protocol.transport._sock_fd
            handle, _ = asyncio.get_running_loop()._selector.get_key(fd).data  # type: ignore[attr-defined]
            assert isinstance(handle._callback, _ingest.Reader)
            assert handle._callback.datagrams >= taps
        else:
            assert direct.compiled is None
            assert ice.data_received == direct.data_received
        # Every packet the taps got came through the callback (none through the
        # queue, except while the queue held a DTLS or RTCP datagram).
        assert direct.packets >= taps * 0.9 > 0
    else:
        assert "data_received" not in vars(ice), "aiortc's own path: nothing installed"


async def test_an_empty_or_oversized_datagram_does_not_cut_the_publisher_off(
    harness: RoomHarness, publisher: Publisher, ingest_path: str, request: pytest.FixtureRequest
) -> None:
    """Anyone who can reach the port can send these; aiortc's receive task dies on them."""
    if ingest_path == "aiortc":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="aiortc 1.16's receive task raises on an empty datagram (data[0]) "
                "and on one longer than pylibsrtp's buffer, and closes the connection",
            )
        )
    video = _forwarders(harness)["video"]
    recorder = Recorder()
    video.attach(recorder)
    # From another port (aioice takes data from any address); asyncio would not
    # send an empty datagram on the publisher's own transport.
    pair = publisher.dtls.transport._connection._nominated[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(b"", pair.remote_addr)
        stranger.sendto(b"\x80\x60" + os.urandom(3000), pair.remote_addr)
    await publisher.send("video", _video(harness, publisher, 20, VP8_KEYFRAME))
    (inbound, *_) = _connection(harness)._inbound.values()
    server_dtls = inbound.transceiver.receiver.transport
    await harness.wait_until(
        lambda: len(recorder.packets) == 1 or server_dtls.state == "closed",
        "the next good packet (or the connection to close)",
    )
    assert server_dtls.state == "connected"
    assert recorder.packets == [(20, True)]
    (direct,) = _ingests(harness)
    assert direct.dropped == 2


def _forward_delays() -> ingest.ForwardDelays:
    delays = ingest.forward_delays()
    assert delays is not None
    return delays


def _copy_delays() -> ingest.ForwardDelays:
    delays = ingest.copy_delays()
    assert delays is not None
    return delays


def _delayed_over(seconds: float, delays: ingest.ForwardDelays | None = None) -> int:
    """Forwarded packets (or copies) timed in buckets wholly above ``seconds``."""
    delays = _forward_delays() if delays is None else delays
    lower_bounds = (0.0, *delays.bounds)
    return sum(c for low, c in zip(lower_bounds, delays.counts, strict=True) if low >= seconds)


async def _two_subscribers(harness: RoomHarness) -> tuple[MediaTestClient, MediaTestClient]:
    """Bob and Carol, who only watch, joined and connected."""
    bob = harness.client("bob", video=False, audio=False)
    carol = harness.client("carol", video=False, audio=False)
    await bob.join(publish=False)
    await carol.join(publish=False)
    await harness.wait_until(
        lambda: bob.connected_at is not None and carol.connected_at is not None,
        "the subscribers' connections",
    )
    return bob, carol


@pytest.mark.parametrize("ingest_path", ["compiled"], indirect=True)
async def test_a_frame_read_at_once_goes_to_each_subscriber_in_one_gso_send(
    harness: RoomHarness,
    publisher: Publisher,
    ingest_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A video frame's packets that wait in the node's socket together (a keyframe, or
    any frame while the node was busy) are read in one go; each subscriber's copies then
    leave in one UDP GSO send, and reach the subscribers' aiortc whole and in order."""
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    bob, carol = await _two_subscribers(harness)
    # What each subscriber's aiortc gets after SRTP, by payload (the server rewrites
    # the header, not the payload).
    got: dict[str, list[bytes]] = {"bob": [], "carol": []}
    handle_rtp = RTCDtlsTransport._handle_rtp_data

    async def tap(transport: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        for name, client in (("bob", bob), ("carol", carol)):
            if client.sub_pc is not None and transport in {
                t.receiver.transport for t in client.sub_pc.getTransceivers()
            }:
                got[name].append(RtpPacket.parse(data).payload)
        await handle_rtp(transport, data, arrival_time_ms)

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", tap)
    # Keyframes first: each subscriber's stream starts at one, then runs in C.
    (direct,) = _ingests(harness)

    async def send_keyframe(number: int) -> None:
        await publisher.send(
            "video", _video(harness, publisher, number, VP8_KEYFRAME + bytes([number]))
        )
        await harness.wait_until(lambda: direct.packets >= number, "the keyframe to be read")

    seq = 1
    while not (got["bob"] and got["carol"]):
        assert seq <= 50, "the subscribers never got a keyframe"
        await send_keyframe(seq)
        seq += 1
    last = VP8_KEYFRAME + bytes([seq - 1])
    await harness.wait_until(
        lambda: got["bob"][-1:] == got["carol"][-1:] == [last], "both to get the last keyframe"
    )
    got["bob"].clear()
    got["carol"].clear()

    # A frame of eight packets (seven of 1 000 bytes, the last of 600), all in the
    # node's socket before it reads: the test holds the loop while sending them.
    frame = [bytes([0x00, 0x01, i]) + bytes([i]) * (997 if i < 7 else 597) for i in range(8)]
    before = fanout.gso_stats()
    pair = publisher.dtls.transport._connection._nominated[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as camera_socket:
        for i, payload in enumerate(frame):
            packet = _video(harness, publisher, seq + i, payload)
            camera_socket.sendto(publisher.protect("video", packet), pair.remote_addr)
    await harness.wait_until(
        lambda: len(got["bob"]) >= len(frame) and len(got["carol"]) >= len(frame),
        "the frame at both subscribers",
    )
    assert got["bob"] == frame and got["carol"] == frame
    after = fanout.gso_stats()
    assert after["sends"] - before["sends"] == 2, "one send per subscriber"
    assert after["segments"] - before["segments"] == 2 * len(frame)
    # Exported by each node's /metrics.
    registry = ServerMetrics("node-a").registry
    assert registry.get_sample_value("yitang_forward_gso_sends_total") == after["sends"]
    assert registry.get_sample_value("yitang_forward_gso_copies_total") == after["segments"]


@pytest.mark.parametrize("ingest_path", ["compiled"], indirect=True)
async def test_the_node_times_each_forwarded_packet_from_its_arrival(
    harness: RoomHarness, publisher: Publisher, ingest_path: str
) -> None:
    """The forward delay (``yitang_forward_delay_seconds``) starts when the kernel received
    the packet, not when the node got round to it: packets that waited in the socket
    while the process was held show that wait. Packets nobody receives are not timed.
    The copy delay (``yitang_forward_copy_delay_seconds``) times each copy the same way."""
    timed, copies = sum(_forward_delays().counts), sum(_copy_delays().counts)
    # Nobody subscribes yet: handled, not forwarded, not timed.
    (direct,) = _ingests(harness)
    for seq in range(1, 4):
        await publisher.send("video", _video(harness, publisher, seq, VP8_KEYFRAME))
    await harness.wait_until(lambda: direct.packets >= 3, "the packets to be handled")
    assert sum(_forward_delays().counts) == timed
    assert sum(_copy_delays().counts) == copies

    # Two subscribers: two copies of each packet.
    await _two_subscribers(harness)
    next_seq = 4

    async def camera() -> None:
        # The publisher's camera at 30 frames a second, a keyframe a second.
        nonlocal next_seq
        while True:
            payload = VP8_KEYFRAME if next_seq % 30 == 4 else VP8_DELTA
            await publisher.send("video", _video(harness, publisher, next_seq, payload))
            next_seq += 1
            await asyncio.sleep(1 / 30)

    marks = [(sum(_forward_delays().counts), sum(_copy_delays().counts))]

    def both_copies_timed() -> bool:
        # Since the last look, packets were forwarded and each had two copies timed: both
        # subscribers' streams are in the compiled steady state (the first packets after a
        # subscription take the Python path, whose copies are not timed).
        packets, copies = sum(_forward_delays().counts), sum(_copy_delays().counts)
        last_packets, last_copies = marks[-1]
        marks.append((packets, copies))
        return packets > last_packets and copies - last_copies == 2 * (packets - last_packets)

    sending = asyncio.create_task(camera())
    try:
        await harness.wait_until(
            lambda: sum(_forward_delays().counts) >= timed + 10, "forwarded packets to be timed"
        )
        await harness.wait_until(both_copies_timed, "each packet's two copies to be timed")
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)

    # Five packets arrive while the process is held for 60 ms (as by a long garbage
    # collection): they wait in the node's socket, and the node reads them after.
    held = 0.06
    handled = direct.packets
    late, timed = _delayed_over(0.05), sum(_forward_delays().counts)
    copies_before = _copy_delays()
    late_copies, copies = _delayed_over(0.05, copies_before), sum(copies_before.counts)
    held_sum = _forward_delays().sum
    stalled = [
        publisher.protect("video", _video(harness, publisher, next_seq + i)) for i in range(5)
    ]
    pair = publisher.dtls.transport._connection._nominated[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as camera_socket:
        for datagram in stalled:
            camera_socket.sendto(datagram, pair.remote_addr)
        time.sleep(held)  # noqa: ASYNC251 -- holds the event loop, the node's too: under test
    await harness.wait_until(lambda: direct.packets >= handled + 5, "the held packets")
    assert sum(_forward_delays().counts) == timed + 5
    assert _delayed_over(0.05) == late + 5
    # Each copy is timed, and each copy of a held packet shows the wait; no copy waited
    # longer than its packet's last copy.
    copies_after = _copy_delays()
    assert sum(copies_after.counts) == copies + 10
    assert _delayed_over(0.05, copies_after) == late_copies + 10
    mean_copy = (copies_after.sum - copies_before.sum) / 10
    mean_packet = (_forward_delays().sum - held_sum) / 5
    assert held <= mean_copy <= mean_packet

    # Exported by each node's /metrics.
    registry = ServerMetrics("node-a").registry
    delays = _forward_delays()
    assert registry.get_sample_value("yitang_forward_delay_seconds_count") == sum(delays.counts)
    assert registry.get_sample_value("yitang_forward_delay_seconds_sum") == delays.sum
    assert registry.get_sample_value("yitang_forward_delay_seconds_bucket", {"le": "0.05"}) == sum(
        delays.counts
    ) - _delayed_over(0.05)
    copy_delays = _copy_delays()
    assert registry.get_sample_value("yitang_forward_copy_delay_seconds_count") == sum(
        copy_delays.counts
    )
    assert registry.get_sample_value("yitang_forward_copy_delay_seconds_sum") == copy_delays.sum
