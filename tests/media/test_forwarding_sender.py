"""The header-patching sender, end to end: what a real aiortc subscriber receives.

The subscriber records the RTP packets of one forwarded track after SRTP (a
recording jitter buffer: nothing is decoded), so the tests see exactly the
sequence numbers, timestamps, SSRC and payloads on the wire, and the sender
reports aiortc parsed from our RTCP.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import pytest
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import AnyRtcpPacket, RtcpRtpfbPacket, RtpPacket
from media_testkit import MediaTestClient, ReceivedTrack, RoomHarness, loopback_config

from server.media import ingest, rtcp_handling
from server.media.aiortc_internals import install_jitter_buffer
from server.media.forwarding_sender import ForwardingSender
from server.metrics.server_metrics import ServerMetrics


@dataclass(frozen=True)
class _Received:
    ssrc: int
    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes


class _RecordingBuffer:
    """Jitter-buffer replacement at the subscriber: records every packet, decodes nothing."""

    def __init__(self, on_packet: object) -> None:
        self.packets: list[_Received] = []
        self._notify = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.packets.append(
            _Received(
                packet.ssrc, packet.sequence_number, packet.timestamp, packet.marker, packet.payload
            )
        )
        self._notify()  # type: ignore[operator]
        return False, None


def _record_video_from(client: MediaTestClient, publisher_id: str) -> _RecordingBuffer:
    """Make ``client`` record (instead of decode) the video it receives from ``publisher_id``."""
    recorder = _RecordingBuffer(client.harness.signal.notify)
    original = client._on_track

    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and track.id.startswith(f"{publisher_id}-video"):
            assert client.sub_pc is not None
            receiver = next(
                t.receiver for t in client.sub_pc.getTransceivers() if t.receiver.track is track
            )
            install_jitter_buffer(receiver, recorder)
            client.received[track.id] = ReceivedTrack(track.id, track.kind, track)
            return
        original(track)

    client._on_track = on_track  # type: ignore[method-assign]
    return recorder


def _unique(packets: list[_Received], ssrc: int | None = None) -> list[_Received]:
    # Retransmissions (answers to the subscriber's own NACKs) repeat a packet.
    seen: set[int] = set()
    result = []
    for packet in packets:
        if ssrc is not None and packet.ssrc != ssrc:
            continue
        if packet.sequence_number not in seen:
            seen.add(packet.sequence_number)
            result.append(packet)
    return result


def _forward_distance(a: int, b: int, modulus: int) -> int:
    """b - a in (-modulus/2, modulus/2]: how far b is ahead of a, across wraps."""
    return (b - a + modulus // 2) % modulus - modulus // 2


def _sender_of(harness: RoomHarness, subscriber: str, publisher: str) -> ForwardingSender:
    senders = harness.room._participants[subscriber].subscribe.senders
    return next(s for s in senders if s.track_id.startswith(f"{publisher}-video"))


def _assert_sent_by(fanout_path: str, sender: ForwardingSender) -> None:
    """The packets went through the path under test (the compiled one: most of them)."""
    stream = sender.fast_stream
    if fanout_path == "python":
        assert stream is None
        return
    assert stream is not None
    assert stream.fast_sent > sender.packets_queued // 2, (stream.fast_sent, sender.packets_queued)


async def test_sequence_and_timestamps_continue_across_a_pause_and_resume(fanout_path: str) -> None:
    # Setting last_n=1 pauses "c" (the later of two publishers nobody heard speak).
    harness = RoomHarness(loopback_config(last_n=None))
    try:
        a = harness.client("a", width=64, height=48)
        c = harness.client("c", width=64, height=48)
        viewer = harness.client("viewer", video=False, audio=False)
        recorder = _record_video_from(viewer, "c")
        await a.join()
        await c.join()
        await viewer.join(publish=False)
        await harness.wait_until(lambda: len(recorder.packets) >= 30, "c's video at the viewer")
        sender = _sender_of(harness, "viewer", "c")
        assert sender.channel is not None
        ssrc = sender.channel.ssrc  # the viewer's one stream of c's video, throughout

        def received() -> int:
            return len(_unique(recorder.packets, ssrc))

        before = received()
        forwarder = harness.room.track_forwarder(sender.track_id)

        harness.room.last_n = 1  # c's video is paused for the viewer (no renegotiation)
        paused_at = forwarder.packets_received
        await harness.wait_until(
            lambda: forwarder.packets_received >= paused_at + 30,
            "c to send 30 more packets while paused (a gap in its numbering)",
        )
        stalled = received()
        harness.room.last_n = None  # resumes at a keyframe
        await harness.wait_until(lambda: received() >= stalled + 30, "c's video again")
        _assert_sent_by(fanout_path, sender)
    finally:
        await harness.close()

    packets = _unique(recorder.packets, ssrc)
    assert stalled - before < 30, "forwarding paused"
    for i, (first, second) in enumerate(itertools.pairwise(packets)):
        # No gap in the subscriber's numbering, although the source skipped 30+ packets.
        assert _forward_distance(first.sequence_number, second.sequence_number, 65536) == 1, i
        # Timestamps never go back: the source's clock is kept across the pause.
        assert 0 <= _forward_distance(first.timestamp, second.timestamp, 2**32) < 90000 * 30, i


async def test_sender_reports_count_exactly_the_packets_and_octets_sent(
    fanout_path: str, harness: RoomHarness
) -> None:
    alice = harness.client("alice", width=64, height=48)
    bob = harness.client("bob", video=False, audio=False)
    recorder = _record_video_from(bob, "alice")
    await alice.join()
    await bob.join(publish=False)
    await harness.wait_until(lambda: len(recorder.packets) >= 10, "alice's video at bob")

    def video_receiver() -> RTCRtpReceiver:
        assert bob.sub_pc is not None
        return next(
            t.receiver
            for t in bob.sub_pc.getTransceivers()
            if t.kind == "video" and t.receiver.track is not None
        )

    reports: list[tuple[int, int]] = []

    async def wait_for_report() -> None:
        # getStats() is how a subscriber reads our sender reports; no event for an SR.
        while True:
            stats = await video_receiver().getStats()
            for s in stats.values():
                if s.type == "remote-outbound-rtp" and s.packetsSent >= 20:
                    # Packets arrive in send order before the report that counts them.
                    reports.append((s.packetsSent, s.bytesSent))
                    return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(wait_for_report(), 10)
    (packets_sent, octets_sent), *_ = reports
    received = _unique(recorder.packets)
    assert len(received) >= packets_sent
    # The report counts the first `packets_sent` packets, and exactly their payload octets.
    assert sum(len(p.payload) for p in received[:packets_sent]) == octets_sent
    _assert_sent_by(fanout_path, _sender_of(harness, "bob", "alice"))


@pytest.fixture(params=["direct", "aiortc"])
def rtcp_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The subscriber's RTCP through the direct ingest, or through aiortc's receive task."""
    monkeypatch.setattr(ingest, "enabled", request.param == "direct")
    return str(request.param)


async def _alice_watched_by_bob(harness: RoomHarness) -> tuple[MediaTestClient, _RecordingBuffer]:
    """alice publishes; bob only watches, recording her video (20 packets in)."""
    alice = harness.client("alice", width=64, height=48)
    bob = harness.client("bob", video=False, audio=False)
    recorder = _record_video_from(bob, "alice")
    await alice.join()
    await bob.join(publish=False)
    await harness.wait_until(lambda: len(recorder.packets) >= 20, "alice's video at bob")
    return bob, recorder


async def _nack_and_wait(
    harness: RoomHarness, bob: MediaTestClient, recorder: _RecordingBuffer
) -> tuple[_Received, _Received]:
    """bob NACKs the 11th packet he recorded, as if he had lost it (aiortc's own NACK,
    what its NACK generator would send); returns that packet and the one sent again."""
    assert bob.sub_pc is not None
    receiver = next(
        t.receiver
        for t in bob.sub_pc.getTransceivers()
        if t.kind == "video" and t.receiver.track is not None
    )
    wanted = recorder.packets[10]
    before = len(recorder.packets)
    await receiver._send_rtcp_nack(wanted.ssrc, [wanted.sequence_number])
    await harness.wait_until(
        lambda: any(p.sequence_number == wanted.sequence_number for p in recorder.packets[before:]),
        "the retransmission (RTX, unwrapped by bob's receiver)",
    )
    again = next(
        p for p in recorder.packets[before:] if p.sequence_number == wanted.sequence_number
    )
    return wanted, again


async def test_a_nack_is_answered_from_the_sent_history(
    fanout_path: str, rtcp_path: str, harness: RoomHarness
) -> None:
    bob, recorder = await _alice_watched_by_bob(harness)
    wanted, again = await _nack_and_wait(harness, bob, recorder)
    assert again == wanted, "the very packet sent before: same header fields and payload"
    # Counted once, for /metrics (per NACKed packet, not per forwarded one).
    bob_senders = harness.room._participants["bob"].subscribe.senders
    assert [s.nacks_received for s in bob_senders if s.kind == "video"] == [1]
    _assert_sent_by(fanout_path, _sender_of(harness, "bob", "alice"))
    pc = harness.room._participants["bob"].subscribe._pc
    assert pc is not None
    if rtcp_path == "direct":
        # bob's RTCP (receiver reports, the NACK) was handled in the datagram callback,
        # each handler to its end there (the retransmission is sent without waiting).
        (direct,) = ingest.install(pc)
        assert direct.rtcp_packets > 0 and direct.rtcp_deferred == 0 and direct.errors == 0
    else:
        assert ingest.install(pc) == []


async def test_the_node_times_each_compound_rtcp_packet_to_the_end_of_its_handlers(
    harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``yitang_rtcp_handling_seconds``: a subscriber's compound RTCP packet is timed
    from its arrival in the ingest to the end of the last handler it reaches, since
    nothing is forwarded meanwhile. A NACK whose handling takes 30 ms shows as such."""
    held = 0.03
    original = ForwardingSender._handle_rtcp_packet

    async def slow_nack(self: ForwardingSender, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRtpfbPacket):
            time.sleep(held)  # noqa: ASYNC251 -- the handler's own cost: under test
        await original(self, packet)

    monkeypatch.setattr(ForwardingSender, "_handle_rtcp_packet", slow_nack)
    monkeypatch.setattr(ingest, "enabled", True)  # the direct ingest, where it is timed
    bob, recorder = await _alice_watched_by_bob(harness)
    # bob's receiver reports (about every second) are timed.
    start = rtcp_handling.handling_times()
    await harness.wait_until(
        lambda: sum(rtcp_handling.handling_times().counts) > sum(start.counts),
        "a receiver report to be handled",
    )
    before = rtcp_handling.handling_times()
    await _nack_and_wait(harness, bob, recorder)
    after = rtcp_handling.handling_times()
    # The NACK's compound packet took longer than its handler was held (a receiver
    # report may too, should the machine preempt the process meanwhile).
    slow = [
        a - b
        for bound, a, b in zip(
            (*after.bounds, float("inf")), after.counts, before.counts, strict=True
        )
        if bound > held
    ]
    assert sum(slow) >= 1, (before, after)
    assert after.sum - before.sum >= held
    # Each node process exports it.
    registry = ServerMetrics("node-a").registry
    assert registry.get_sample_value("yitang_rtcp_handling_seconds_count") == sum(after.counts)
