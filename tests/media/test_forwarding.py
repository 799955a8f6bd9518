"""Participants see and hear each other through the forwarding SFU."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket, RtpPacket
from media_testkit import (
    LOOPBACK,
    CodecUsageProbe,
    RoomHarness,
    client_configuration,
    require_compiled,
)

from server.media import fanout
from server.media.aiortc_internals import (
    SENDER_ATTRIBUTES,
    TransportSenderReports,
    gather_only_on,
    sender_ssrc,
)
from server.media.forwarding_sender import ForwardingSender


async def test_two_participants_receive_each_others_media(harness: RoomHarness) -> None:
    alice = harness.client("alice")
    bob = harness.client("bob")
    await alice.join()
    await bob.join()

    await harness.wait_until(
        lambda: all(
            c.frames_from(other, "video") >= 10 and c.frames_from(other, "audio") >= 10
            for c, other in ((alice, "bob"), (bob, "alice"))
        ),
        "both clients to decode each other's audio and video",
    )
    # The content is what the other side drew: its sender index, counters increasing.
    for client, other in ((alice, bob), (bob, alice)):
        (track,) = client.tracks_from(other.participant_id, "video")
        senders = {s for s, _ in track.counters}
        assert senders == {other.index}
        counters = [c for _, c in track.counters]
        assert counters == sorted(counters), "frames arrive in order"
        assert counters[-1] - counters[0] >= len(counters) - 1
        assert other.video is not None
        assert counters[-1] < other.video.sent
    # The publish answer accepted the RFC 6464 audio-level extension (speaker detection).
    assert alice.pub_pc is not None
    assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in alice.pub_pc.remoteDescription.sdp

    # Our senders' reports carry real counters: the client sees them as remote-outbound-rtp.
    async def reported_packets() -> list[int]:
        assert alice.sub_pc is not None
        values = []
        for transceiver in alice.sub_pc.getTransceivers():
            report = await transceiver.receiver.getStats()
            values += [s.packetsSent for s in report.values() if s.type == "remote-outbound-rtp"]
        return values

    reported: list[int] = []

    async def poll() -> None:
        while len(reported) < 2 or min(reported) == 0:
            reported[:] = await reported_packets()
            await asyncio.sleep(0.1)  # polling getStats(): there is no event for an SR

    await asyncio.wait_for(poll(), 5)
    server_senders = [
        s for p in ("alice", "bob") for s in harness.room._participants[p].subscribe.senders
    ]
    for sender in server_senders:
        assert sender.channel is not None
        assert getattr(sender, SENDER_ATTRIBUTES["packet_count"]) == sender.channel.packets_sent > 0
        # The report, packed by hand, is the SR and SDES aiortc would have serialized.
        sr, sdes = RtcpPacket.parse(sender.sender_report())
        assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
        assert sr.ssrc == sdes.chunks[0].ssrc == sender_ssrc(sender)
        assert sr.sender_info.packet_count == sender.channel.packets_sent
        assert sr.sender_info.octet_count == getattr(sender, SENDER_ATTRIBUTES["octet_count"])
        assert sr.sender_info.ntp_timestamp == getattr(sender, SENDER_ATTRIBUTES["ntp_timestamp"])
        assert sdes.chunks[0].items == [(1, getattr(sender, SENDER_ATTRIBUTES["cname"]).encode())]
        assert bytes(sr) + bytes(sdes) == sender.sender_report()
        # The NACK history holds what was sent: the newest video packet can be
        # retransmitted (audio, which negotiates no NACK, keeps the numbers only).
        newest = sender.channel.sent_sequence_numbers()[-1]
        again = sender.channel.packet_for_retransmission(newest)
        assert (again is not None) is (sender.kind == "video")
    # A subscribe connection's senders report together: one compound packet an interval
    # (each connection's reporter has its own 0.5-1.5 s interval: wait for both).
    reporters = []
    for participant in ("alice", "bob"):
        (transport,) = {
            s.transport for s in harness.room._participants[participant].subscribe.senders
        }
        reporters.append(TransportSenderReports.of(transport))
    await harness.wait_until(
        lambda: all(r.reports_sent > r.datagrams_sent > 0 for r in reporters),
        "both subscribers' sender reports sent as compound packets",
    )


async def test_the_compiled_sent_history_stays_out_of_the_collectors_sight(
    harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each packet the compiled fan-out sends goes into its stream's retransmission
    history, which makes no object per packet and which no garbage collection walks. As
    tracked tuples, ~240 000 of them sat in the youngest generation of a 36-participant
    node, and the collection that came every ~40 s walked them all with the event loop
    stopped (60-140 ms); as untracked ones, their allocation and release was ~3 % of the
    node's CPU."""
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    from server.media._fanout import SentHistory as CompiledSentHistory

    monkeypatch.setattr(fanout, "enabled", True)
    alice, bob = harness.client("alice"), harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(
        lambda: alice.frames_from("bob", "video") >= 10 and bob.frames_from("alice", "video") >= 10,
        "media both ways",
    )
    senders = [s for p in ("alice", "bob") for s in harness.room._participants[p].subscribe.senders]
    channels = [sender.channel for sender in senders if sender.channel is not None]
    histories = [channel._sent for channel in channels]
    assert histories and all(type(history) is CompiledSentHistory for history in histories)
    assert not any(gc.is_tracked(history) for history in histories)
    streams = [channel._stream for channel in channels if channel._stream is not None]
    assert sum(stream.fast_sent for stream in streams) >= 40  # written by the compiled path
    # ... and the video ones answer a NACK with what was sent. Audio (Opus negotiates no
    # NACK) keeps the numbers only: what its receiver reports are checked against.
    kinds = {sender.kind for sender in senders}
    assert kinds == {"audio", "video"}
    for sender in senders:
        channel = sender.channel
        assert channel is not None
        newest = channel.sent_sequence_numbers()[-1]
        packet = channel.packet_for_retransmission(newest)
        assert channel._sent.keeps_packets is (sender.kind == "video")
        if sender.kind == "audio":
            assert packet is None
            continue
        assert packet is not None and packet.sequence_number == newest
        assert packet.ssrc == channel.ssrc and packet.payload


async def test_three_participants_and_the_server_never_transcodes(
    fanout_path: str, harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CodecUsageProbe(monkeypatch)
    clients = [harness.client(name) for name in ("alice", "bob", "carol")]
    for client in clients:
        await client.join()

    def everyone_sees_everyone() -> bool:
        return all(
            c.frames_from(o.participant_id, kind) >= 10
            for c in clients
            for o in clients
            if o is not c
            for kind in ("audio", "video")
        )

    await harness.wait_until(everyone_sees_everyone, "each client to receive the two others")
    for client in clients:
        for other in clients:
            if other is client:
                continue
            (track,) = client.tracks_from(other.participant_id, "video")
            assert {s for s, _ in track.counters} == {other.index}
            counters = [c for _, c in track.counters]
            assert counters == sorted(counters)

    # The server's own receivers and senders never decoded or encoded a frame ...
    transceivers = [t for pc in harness.room.peer_connections() for t in pc.getTransceivers()]
    assert len(transceivers) == 3 * 2 + 3 * 4  # 2 published + 4 subscribed m-lines each
    server_receivers = [t.receiver for t in transceivers]
    server_senders = [t.sender for t in transceivers]
    sending = [t.sender for t in transceivers if t.direction == "sendonly"]
    assert len(sending) == 12
    assert all(isinstance(s, ForwardingSender) for s in sending)
    # The path under test forwarded (the compiled fan-out sends from C, no codec either).
    streams = [s.fast_stream for s in sending]
    if fanout_path == "compiled":
        assert all(stream is not None and stream.fast_sent > 0 for stream in streams)
    else:
        assert streams == [None] * len(sending)
    assert sum(probe.frames_decoded_by(r) for r in server_receivers) == 0
    assert sum(probe.frames_encoded_by(s) for s in server_senders) == 0
    # ... while the probe did see the clients' codecs at work in the same process.
    assert probe.total_decoded > 0
    assert probe.total_encoded > 0
    stats = harness.room.stats()
    assert stats.packets_received > 0
    assert stats.packets_sent > 0
    assert stats.octets_sent > stats.packets_sent  # payload bytes (what bench/tiers.py sums)


async def test_late_joiner_gets_video_after_a_keyframe_request(
    fanout_path: str, harness: RoomHarness
) -> None:
    alice = harness.client("alice")
    bob = harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(
        lambda: alice.frames_from("bob", "video") >= 30 and bob.frames_from("alice", "video") >= 30,
        "the first two to exchange video for about a second",
    )
    plis_before = harness.room.stats().plis_sent

    carol = harness.client("carol", video=False, audio=False)
    await carol.join(publish=False)
    await harness.wait_until(
        lambda: carol.frames_from("alice", "video") >= 1 and carol.frames_from("bob", "video") >= 1,
        "the late joiner's first video frames",
        within=5,
    )
    assert harness.room.stats().plis_sent > plis_before
    assert carol.connected_at is not None
    for publisher in ("alice", "bob"):
        (track,) = carol.tracks_from(publisher, "video")
        assert track.first_frame_at is not None
        assert track.first_frame_at - carol.connected_at < 1.0


async def test_leaving_participant_tracks_end_at_the_others_within_a_second(
    harness: RoomHarness,
) -> None:
    alice = harness.client("alice")
    bob = harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(
        lambda: alice.frames_from("bob", "video") >= 5 and alice.frames_from("bob", "audio") >= 5,
        "alice to receive bob",
    )
    offers_before = alice.offers
    started = time.monotonic()
    await harness.room.remove_participant("bob")
    # Within a second on a quiet machine (the RTCP BYE goes at once; docs/protocol.md).
    # Here server and clients share one process, which a busy machine slows down as a
    # whole (1.4 s was seen beside a CPU hog): the bound allows for that.
    await harness.wait_until(
        lambda: all(t.ended for t in alice.tracks_from("bob")), "bob's tracks to end", within=3.0
    )
    assert time.monotonic() - started < 3.0
    # ... and alice got a re-offer without them (m-lines inactive).
    await harness.wait_until(lambda: alice.offers > offers_before, "a re-offer", within=2)
    assert alice.sub_pc is not None
    directions = [t.currentDirection for t in alice.sub_pc.getTransceivers()]
    await harness.wait_until(
        lambda: (
            [t.currentDirection for t in alice.sub_pc.getTransceivers()]  # type: ignore[union-attr]
            == ["inactive", "inactive"]
        ),
        f"bob's m-lines to be inactive (were {directions})",
        within=2,
    )
    assert harness.room.tracks() == tuple(
        t for t in harness.room.tracks() if t.participant_id == "alice"
    )
    assert harness.room.participant_ids == ["alice"]


async def test_h264_is_forwarded_when_the_publisher_offers_only_h264(
    harness: RoomHarness,
) -> None:
    from aiortc import RTCRtpSender

    alice = harness.client("alice", audio=False)
    bob = harness.client("bob", video=False, audio=False)
    await harness.room.add_participant("alice", can_publish=True)
    with gather_only_on(LOOPBACK):
        alice.pub_pc = RTCPeerConnection(client_configuration())
        transceiver = alice.pub_pc.addTransceiver(alice.video, direction="sendonly")  # type: ignore[arg-type]
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType == "video/H264" and c.parameters["profile-level-id"] == "42e01f"
            ]
        )
        await alice.pub_pc.setLocalDescription(await alice.pub_pc.createOffer())
    answer = await harness.room.publish("alice", alice.pub_pc.localDescription.sdp)
    assert "H264" in answer
    assert "VP8" not in answer
    await alice.pub_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await bob.join(publish=False)
    await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 5, "H.264 frames at bob")
    (track,) = bob.tracks_from("alice", "video")
    assert {s for s, _ in track.counters} == {alice.index}
    (info,) = harness.room.tracks()
    assert info.codec == "video/H264"


async def test_a_sink_that_raises_does_not_cut_the_publisher_off(harness: RoomHarness) -> None:
    # A recorder bug must not close the publisher's transport (the exception
    # would surface in aiortc's DTLS receive loop, which then closes for good).
    alice = harness.client("alice")
    bob = harness.client("bob", video=False, audio=False)
    await alice.join()
    await bob.join(publish=False)
    await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 3, "bob sees alice")

    class BrokenRecorder:
        def __init__(self) -> None:
            self.calls = 0
            self.ended = False

        def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
            self.calls += 1
            raise OSError("disk full")

        def on_forwarder_ended(self) -> None:
            self.ended = True

    video = next(t for t in harness.room.tracks() if t.kind == "video")
    forwarder = harness.room.track_forwarder(video.track_id)
    recorder = BrokenRecorder()
    forwarder.attach(recorder)
    await harness.wait_until(lambda: recorder.calls > 0, "a packet to reach the broken recorder")
    frames = bob.frames_from("alice", "video")
    await harness.wait_until(
        lambda: bob.frames_from("alice", "video") >= frames + 15, "bob to keep receiving alice"
    )
    assert recorder.calls == 1
    assert recorder.ended
    assert recorder not in forwarder.sinks
    assert harness.room.connection_states("alice")["publish"] == "connected"
    assert not forwarder.ended


async def test_a_report_that_fails_to_send_skips_one_interval_and_a_closed_transport_stops_them(
    harness: RoomHarness,
) -> None:
    """The RTCP timer of a transport outlives a send that fails (logged, the next interval
    comes), and stops when the transport has closed (ConnectionError), as aiortc's loop."""
    outcomes: list[type[Exception] | None] = [ValueError, None, ConnectionError]
    sent: list[bytes] = []

    class Transport:
        """An RTCDtlsTransport's send, as the reporter calls it: fails, sends, then closed."""

        async def _send_rtp(self, data: bytes) -> None:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome("srtp_protect failed" if outcome is ValueError else "closed")
            sent.append(data)

    class Reports(TransportSenderReports):
        def _member_report(self, member: object) -> bytes:
            return b"report of %s" % str(member).encode()

    reports = Reports(Transport())  # type: ignore[arg-type]
    reports.add("sender")
    await harness.wait_until(lambda: not outcomes, "three intervals")
    assert sent == [b"report of sender"] and reports.datagrams_sent == 1
    assert not reports.running, "the closed transport ended the timer"
    reports.add("another")  # a new member starts it again
    assert reports.running
    reports.remove("another")
    reports.remove("sender")
    assert not reports.running
