"""`yitang loadtest` against a real server: what it reports is what happened.

The load tool is how Yitang's capacity is measured (README); these tests check
that it joins real aiortc participants, measures what they receive, reads the
server's CPU, gives the floor round, cleans up after itself, and that its
counters compute loss and freezes as defined.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from server.loadtest import runner
from server.loadtest.client_load import ClientLoadProbe, judge
from server.loadtest.clip import encode_video
from server.loadtest.clip_sender import ClipSender
from server.loadtest.cpu_steal import busy_percent, read_ticks, steal_percent
from server.loadtest.latency import ArrivalLog, ProbeCounter, SendLog, latencies, send_times
from server.loadtest.participant import count_in_callback
from server.loadtest.receiver_stats import TalliedStatistics, Tally, TrackCounter
from server.loadtest.runner import LoadTestError, LoadTestOptions
from server.loadtest.server_delay import parse_metrics, window
from server.loadtest.worker import ParticipantSpec, WorkerPlan
from server.media import fanout
from server.media.aiortc_internals import (
    COMPILED_INGEST_ERROR,
    gather_only_on,
    install_jitter_buffer,
    install_sender,
)
from server.media.keyframes import vp8_is_keyframe_start
from tests.conftest import free_port
from tests.helpers import eventually
from tests.media.media_testkit import require_compiled
from tests.processes import REPO, server_process


@pytest.mark.timeout(240)
async def test_loadtest_reports_what_the_participants_received(tmp_path: Path) -> None:
    async with server_process(tmp_path / "data", free_port()) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "loadtest", server.base_url,
            "--api-key", server.api_key, "--publishers", "2", "--subscribers", "2",
            "--duration", "5", "--resolution", "320x240", "--bitrate", "300",
            "--speaker-switch", "1", "--processes", "2", "--json",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=200)
        assert process.returncode == 0, err.decode()[-3000:]
        report = json.loads(out)
        assert b"joined 4/4" in err, "a progress line while it runs"

        # Each subscriber receives both publishers; each publisher receives the other.
        video = [t for t in report["tracks"] if t["kind"] == "video"]
        pairs = {(t["subscriber"], t["publisher"]) for t in video}
        assert pairs == {
            ("s1", "p1"), ("s1", "p2"), ("s2", "p1"), ("s2", "p2"), ("p1", "p2"), ("p2", "p1"),
        }  # fmt: skip
        # 30 fps sent; a busy test machine may deliver fewer, never none or more (a
        # frame or two either side of the 5-s window, and a sender's catch-up burst).
        assert all(5 <= t["fps"] <= 30 + 8 / 5 for t in video), video
        assert all(t["kbps"] > 50 for t in video), video
        assert report["video"]["loss_max"] < 0.05
        assert report["audio"]["tracks"] == 6 and report["audio"]["loss_max"] < 0.05
        assert report["video"]["tracks"] == 6 and report["video"]["paused"] == 0
        assert report["join_to_first_frame"]["count"] == 4
        assert 0 < report["join_to_first_frame"]["max"] < 30
        # Each join's steps come in order; each participant was offered its tracks.
        joins = report["joins"]
        assert sorted(j["identity"] for j in joins) == ["p1", "p2", "s1", "s2"]
        for join in joins:
            assert join["join_to_joined"] > 0, join
            assert join["join_to_first_offer"] <= join["join_to_connected"], join
            assert join["join_to_connected"] <= join["join_to_first_frame"], join
            assert join["subscriber_offers"] >= 1, join
        offers = report["subscriber_offers"]
        assert offers["total"] == sum(j["subscriber_offers"] for j in joins)
        assert offers["max"] == max(j["subscriber_offers"] for j in joins)
        assert report["server_cpu_percent"] is not None and report["server_cpu_percent"] > 0
        assert report["floor_changes"] >= 3
        assert report["join_errors"] == []
        # The clients say how loaded they were (whether they could be the limit).
        clients = report["clients"]
        assert clients["processes"] == 3, "two for the load, one for the latency probes"
        assert clients["cpu_percent_max"] > 0 and clients["loop_lag_p95_ms_max"] is not None
        assert isinstance(clients["limited"], bool)
        assert (clients["why"] != "") == clients["limited"]
        # The receivers count in the compiled ingest, in C (not through aiortc's packets),
        # where it is built (scripts/bootstrap builds it: under CI it must be there).
        require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
        assert clients["receive_path"] == "compiled"
        assert clients["counted_in_callback"] > 0.9, clients
        # ... nearly all straight into their tallies: from the second packet of each
        # stream, no Python object touched (the first makes aiortc's statistics).
        assert clients["tallied"] > 0.9, clients
        # The two observers are the latency probes, in a process of their own with the
        # priority it could get; they matched what they received to what was sent.
        latency = report["latency_ms"]
        assert latency["probes"] == 2 and latency["packets"] > 20, latency
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 5000, latency
        assert clients["probe_priority"] in ("realtime", "nice", "normal")
        # The room's node timed each packet it forwarded, from the kernel's receipt to
        # its last copy sent, and the report has the window's share of that histogram.
        held = report["server_forward_delay"]
        assert held["packets"] > 100, held
        assert 0 < held["p50_ms"] <= held["p99_ms"], held
        assert 0 < held["within_5ms"] <= 1 and held["over_100ms"] >= 0, held
        # ... and each copy, from the same receipt to that copy: at least one per packet.
        copies = held["per_copy"]
        assert copies["copies"] >= held["packets"], held
        assert 0 < copies["p50_ms"] <= copies["p99_ms"], held
        assert 0 < copies["within_5ms"] <= 1 and copies["over_100ms"] >= 0, held
        # ... and how long it took for each compound RTCP packet of the window: every
        # subscriber reports on what it receives (about once a second per stream).
        rtcp = held["rtcp"]
        assert rtcp["compound_packets"] >= report["window_seconds"], held
        assert 0 < rtcp["p50_ms"] <= rtcp["p99_ms"] and rtcp["mean_ms"] > 0, held
        # ... and each stretch its event loop ran between two waits (callbacks, tasks,
        # timers): many a second, none held a second or more in so small a session.
        loop = held["loop"]
        assert loop["stretches"] >= report["window_seconds"], held
        assert loop["mean_ms"] > 0 and 0 < loop["p50_ms"] <= loop["p99_ms"], held
        assert loop["longest_ms"] is not None and 0 <= loop["over_5ms"] < loop["stretches"], held
        # ... and its receivers' link levels at the end: the four and the tool's host
        # (it receives too), none at audio only (nothing was paused: see above; a busy
        # machine's loss may have left one at reduced, which pauses nothing here).
        receivers = held["receivers"]
        levels = receivers["levels"]
        assert set(levels) == {"full", "reduced", "audio_only"}, held
        assert sum(levels.values()) == 5 and levels["audio_only"] == 0, held
        assert receivers["steps_down"] >= 0 and receivers["steps_up"] >= 0, held
        # ... and the machine's steal time, by which such delays are to be read.
        steal = report["cpu_steal_percent"]
        busy = report["cpu_busy_percent"]
        assert set(busy) == set(steal), busy
        assert all(0 <= b["softirq"] <= b["busy"] <= 100 for b in busy.values()), busy
        assert any(b["busy"] > 0 for b in busy.values()), busy
        assert set(steal) == {f"cpu{i}" for i in range(os.cpu_count() or 1)}, steal
        assert all(0 <= share <= 100 for share in steal.values()), steal
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{server.base_url}/api/rooms/{report['room']}") as response,
        ):
            assert response.status == 404, "the load test deletes its session"


@pytest.mark.timeout(180)
async def test_a_late_stop_does_not_inflate_the_rates(tmp_path: Path) -> None:
    """The runner tells its workers to stop after reading the server's CPU and delays
    (HTTP, up to a second on a busy machine); a worker's rates are over its own window,
    so a stop that comes late reports 30 fps for 30 sent, not more."""
    async with server_process(tmp_path / "data", free_port()) as server:
        url = server.base_url
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            room_id = await runner._create_room(http, url)
            publisher = await runner._token(http, url, room_id, "p1", "member")
            observer = await runner._token(http, url, room_id, "s1", "observer")
        specs = (ParticipantSpec("p1", publisher, True), ParticipantSpec("s1", observer, False))
        plan = WorkerPlan(
            base_url=url, participants=specs, codec="vp8", width=320, height=240, fps=30,
            bitrate=300_000, ice_addresses=("127.0.0.1",), join_timeout=60,
        )  # fmt: skip
        workers = runner._Workers([plan])
        workers.start()
        try:
            [joined] = await workers.collect("joined", timeout=90, bar=None)
            assert joined["ok"] == 2, joined
            await eventually(lambda: workers.frames.get(0, 0) > 30, "video flows", within=30)
            workers.send({"cmd": "measure"})
            measured = 2.0
            await asyncio.sleep(measured)  # the measurement window, as the runner waits it
            await asyncio.sleep(measured)  # ... and a stop as late again
            workers.send({"cmd": "stop", "seconds": measured})
            [report] = await workers.collect("report", timeout=60, bar=None)
        finally:
            await workers.stop()
    [observer] = [p for p in report["participants"] if p["identity"] == "s1"]
    [video] = [t for t in observer["tracks"] if t["kind"] == "video"]
    # Counted over the stop's 2 s it would be ~60 fps; over the worker's own ~4 s, 30
    # (a frame or two either side of the window, and the sender's catch-up after a
    # stall, at most _MAX_CATCH_UP_FRAMES + 1 frames).
    assert 5 <= video["fps"] <= 30 + 8 / (2 * measured), video


async def test_loadtest_refuses_bad_options_clearly() -> None:
    with pytest.raises(LoadTestError, match="publishers"):
        LoadTestOptions(url="http://127.0.0.1:1", api_key="k", publishers=0)
    with pytest.raises(LoadTestError, match="resolution"):
        LoadTestOptions(url="http://127.0.0.1:1", api_key="k", width=4000)
    with pytest.raises(LoadTestError, match="latency probes"):
        LoadTestOptions(url="http://127.0.0.1:1", api_key="k", latency_probes=9)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "loadtest", "http://127.0.0.1:1", "--api-key", "k",
        "--resolution", "big", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert b"resolution is WIDTHxHEIGHT" in err


HEADER_EXTENSIONS = HeaderExtensionsMap()
HEADER_EXTENSIONS.configure(
    RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            )
        ]
    )
)


def _packet(seq: int, marker: bool = True) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, marker=marker, payload=b"x" * 100)


def test_track_counter_counts_loss_across_the_sequence_wrap() -> None:
    counter = TrackCounter("video", clock=lambda: 0.0)
    for seq in [65530, 65531, 65533, 65534, 65535, 0, 1, 3]:  # 65532 and 2 lost
        counter.add(_packet(seq))
    window = counter.window(1.0)
    assert counter.expected == 10
    assert window["loss"] == pytest.approx(0.2)
    assert window["fps"] == 8


def test_track_counter_counts_a_freeze_as_webrtc_defines_it() -> None:
    now = [0.0]
    counter = TrackCounter("video", clock=lambda: now[0])
    for seq in range(30):  # 30 fps
        now[0] = seq / 30
        counter.add(_packet(seq))
    counter.start_window()
    now[0] += 0.15  # more than 3 x 33 ms but within average + 150 ms: not a freeze
    counter.add(_packet(30))
    now[0] += 0.40  # beyond both: a freeze
    counter.add(_packet(31))
    window = counter.window(1.0)
    assert window["freezes"] == 1
    assert window["frozen_seconds"] == pytest.approx(0.40)


_TALLY_COUNTS = (
    "packets", "bytes", "frames", "freezes", "frozen_seconds", "interval_sum", "first_seq",
    "highest", "has_first_seq", "first_frame_at", "has_first_frame", "last_frame_at",
    "has_last_frame",
)  # fmt: skip


def test_the_compiled_tally_counts_what_the_python_tally_does() -> None:
    """The compiled Tally (server/media/_ingest_tally.h), which the ingest counts a
    load-test receiver's packets into, counts exactly as the Python reference does:
    in-order, lost, repeated, reordered and wrapping sequence numbers, frames with
    and without markers, steady frames, freezes and time standing still, for video
    and audio."""
    require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
    from server.media import _ingest

    rng = random.Random(4242)
    now = 50.0
    for kind in ("video", "audio"):
        python, compiled = Tally(kind), _ingest.Tally(kind)
        seq = 65_000
        for _ in range(5000):
            seq = (seq + rng.choice((1, 1, 1, 2, 7, 0, -1, -3, 30_000, -40_000))) % 0x10000
            now += rng.choice((0.0, 0.033, 0.033, 0.033, 0.01, 0.2, 0.9))
            marker, size = rng.random() < 0.4, rng.randint(0, 1200)
            python.count(seq, marker, size, now)
            compiled.count(seq, marker, size, now)
            for name in _TALLY_COUNTS:
                assert getattr(compiled, name) == getattr(python, name), name
        # Every case came up (audio has no freezes: each packet is a frame).
        assert (python.freezes > 0) == (kind == "video")
        assert python.frames > 0 and python.highest - python.first_seq + 1 > python.packets


_STATISTICS = (
    "base_seq", "max_seq", "cycles", "packets_received", "_jitter_q4", "_last_arrival",
    "_last_timestamp",
)  # fmt: skip


def test_a_tallys_receiver_statistics_are_aiortcs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A load-test receiver's statistics move into its Tally after the first packet
    (`TalliedStatistics`), and the C then adds each packet there: the receiver reports
    aiortc sends from them (loss, fraction lost, jitter, highest sequence number) stay
    what aiortc's own StreamStatistics gives, across wraps, reordering and loss, also
    for a packet that takes aiortc's path (aiortc's add, through the view)."""
    require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
    import aiortc.rtcrtpreceiver
    from aiortc.rtcrtpreceiver import StreamStatistics

    from server.media import _ingest

    now = [1_700_000_000.0]
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "time", type("clock", (), {"time": lambda: now[0]}))
    rng = random.Random(77)
    reference = StreamStatistics(90_000)
    first = StreamStatistics(90_000)
    seq, timestamp = 65_500, 4_294_960_000
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp)
    reference.add(packet)
    first.add(packet)
    tallied = TalliedStatistics(first, _ingest.Tally("video"))
    assert isinstance(tallied, StreamStatistics) and tallied.tally.clockrate == 90_000
    for step in range(4000):
        seq = (seq + rng.choice((1, 1, 1, 1, 2, 5, 0, -1, -2))) % 0x10000
        timestamp = (timestamp + rng.choice((0, 0, 3000, 3000, 2990))) % (1 << 32)
        now[0] += rng.choice((0.0, 0.001, 0.033, 0.05))
        packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp)
        reference.add(packet)
        if step % 10 == 9:
            tallied.add(packet)  # aiortc's own add, on the view
        else:
            tallied.tally.add_statistics(seq, timestamp, now[0])
        for name in _STATISTICS:
            assert getattr(tallied, name) == getattr(reference, name), (step, name)
        if step % 50 == 0:  # what a receiver report reads (fraction_lost moves its priors)
            assert tallied.fraction_lost == reference.fraction_lost
            assert tallied.packets_lost == reference.packets_lost
            assert tallied.jitter == reference.jitter
    assert reference.cycles > 0 and reference.packets_lost != 0 and reference.jitter > 0


async def _negotiate(
    sending: RTCPeerConnection,
    receiving: RTCPeerConnection,
    before_connecting: Callable[[], None] | None = None,
) -> None:
    """Offer from ``sending``, answer from ``receiving``, on 127.0.0.1 only;
    ``before_connecting`` runs once the receiver's side is set, before the sender's."""
    with gather_only_on(("127.0.0.1",)):
        await sending.setLocalDescription(await sending.createOffer())
        await receiving.setRemoteDescription(sending.localDescription)
        await receiving.setLocalDescription(await receiving.createAnswer())
        if before_connecting is not None:
            before_connecting()
        await sending.setRemoteDescription(receiving.localDescription)


@pytest.mark.timeout(90)
async def test_a_clip_sender_sends_decodable_video_through_the_compiled_stream() -> None:
    """A load publisher's ClipSender: what an aiortc receiver gets is the clip, decodable,
    one frame per 1/30 s of RTP time, its packets sent by the compiled fan-out's stream
    (all but the first few), each video payload told to the send log first, and its
    sender reports carry the stream's counts."""
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    clip = encode_video("vp8", 160, 120, 30, 150_000)
    noted: list[bytes] = []
    sending, receiving = RTCPeerConnection(), RTCPeerConnection()
    tracks: list[MediaStreamTrack] = []
    receiving.on("track", tracks.append)
    try:
        transceiver = sending.addTransceiver("video", direction="sendonly")
        sender = ClipSender(clip, transceiver.receiver.transport, on_send=noted.append)
        install_sender(transceiver, sender, stream_id="clip", track_id="video")
        await _negotiate(sending, receiving)
        frames = [await asyncio.wait_for(tracks[0].recv(), 30) for _ in range(45)]
        assert all((f.width, f.height) == (160, 120) for f in frames)
        steps = [b.pts - a.pts for a, b in itertools.pairwise(frames)]
        assert all(step > 0 and step % 3000 == 0 for step in steps), steps
        assert sender.packets_sent >= 45 and len(noted) == sender.packets_sent
        assert sender.compiled_sent >= sender.packets_sent - 5, "the stream sends in C"

        # The receiver's view of the sender's reports: the stream's own counts.
        async def reported() -> int:
            stats = await receiving.getStats()
            remote = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
            return int(remote[0].packetsSent) if remote else 0

        await eventually(reported, "a sender report (every 0.5-1.5 s)", within=30)
        assert 0 < await reported() <= sender.packets_sent
    finally:
        await sending.close()
        await receiving.close()


class _FrameLog:
    """A receiver's jitter buffer replacement: notes, per frame received, whether it
    began with a VP8 keyframe (nothing is decoded)."""

    def __init__(self) -> None:
        #: One entry per frame ended (marker bit): was its first packet a keyframe's?
        self.frames: list[bool] = []
        self._keyframe = False
        self._starting = True

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        if self._starting:
            self._keyframe = vp8_is_keyframe_start(packet.payload)
            self._starting = False
        if packet.marker:
            self.frames.append(self._keyframe)
            self._starting = True
        return False, None


@pytest.mark.timeout(90)
async def test_a_clip_sender_answers_a_keyframe_request_at_the_next_frame() -> None:
    """A load publisher's video has its keyframe unasked once per clip (the keyframe
    interval), and answers a keyframe request (PLI) at once, as a browser's encoder
    does: a new subscriber sees a picture at once, and the SFU forwards as many
    keyframe bursts as a browser would make it."""
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    clip = encode_video("vp8", 160, 120, 30, 150_000, keyframe_interval=20)
    assert len(clip.packets) == 600, "20 s at 30 fps"
    starts = [i for i, frame in enumerate(clip.packets) if frame[0] & 1 == 0]
    assert starts == [0], "one keyframe, the clip's first frame (RFC 6386: P bit clear)"
    sending, receiving = RTCPeerConnection(), RTCPeerConnection()
    log = _FrameLog()

    def on_track(track: MediaStreamTrack) -> None:
        transceiver = next(t for t in receiving.getTransceivers() if t.receiver.track is track)
        install_jitter_buffer(transceiver.receiver, log)

    receiving.on("track", on_track)
    try:
        transceiver = sending.addTransceiver("video", direction="sendonly")
        sender = ClipSender(clip, transceiver.receiver.transport)
        install_sender(transceiver, sender, stream_id="clip", track_id="video")
        await _negotiate(sending, receiving)
        await eventually(lambda: len(log.frames) >= 30, "a second of video", within=30)
        # The clip's own keyframe is its first frame; none since (the interval is 20 s).
        first = log.frames.index(True)
        assert not any(log.frames[first + 1 :]), log.frames
        asked_at = len(log.frames)
        (receiver,) = [t.receiver for t in receiving.getTransceivers()]
        await receiver._send_rtcp_pli(sender._ssrc)
        await eventually(lambda: any(log.frames[asked_at:]), "the keyframe asked for", within=30)
        # Answered at the frame after the request arrived: well before the clip's next
        # own keyframe (600 frames on), whatever the machine's pace.
        answered_at = log.frames.index(True, asked_at)
        assert answered_at - asked_at < 30, (asked_at, answered_at)
        assert sender.keyframe_requests == 1
    finally:
        await sending.close()
        await receiving.close()


@pytest.mark.timeout(90)
async def test_an_h264_track_is_counted_straight_into_its_tally() -> None:
    """A load receiver of H.264 (`--codec h264`) counts in C like one of VP8: a counter
    needs nothing of aiortc's depacketizer, so from each stream's second packet on the
    ingest counts it into the Tally (and the publisher sends it with a ClipSender)."""
    require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
    require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
    clip = encode_video("h264", 160, 120, 30, 150_000)
    sending, receiving = RTCPeerConnection(), RTCPeerConnection()
    counters: list[TrackCounter] = []

    def on_track(track: MediaStreamTrack) -> None:
        transceiver = next(t for t in receiving.getTransceivers() if t.receiver.track is track)
        counters.append(TrackCounter(track.kind))
        install_jitter_buffer(transceiver.receiver, counters[-1])

    receiving.on("track", on_track)
    try:
        transceiver = sending.addTransceiver("video", direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("video")
        assert capabilities is not None
        transceiver.setCodecPreferences(
            [c for c in capabilities.codecs if c.mimeType in ("video/H264", "video/rtx")]
        )
        sender = ClipSender(clip, transceiver.receiver.transport)
        install_sender(transceiver, sender, stream_id="clip", track_id="video")
        # The load participant's receive path, installed as a load participant does.
        await _negotiate(sending, receiving, lambda: count_in_callback(receiving))
        assert "H264" in receiving.localDescription.sdp
        await eventually(lambda: bool(counters) and counters[0].frames >= 45, "45 frames", 30)
        (counter,) = counters
        # The first packets go the usual way (the stream's statistics are made, the
        # connection may still be coming up); every one after, straight into the Tally.
        assert counter.added <= 5, counter.added
        assert counter.tallied >= counter.packets - 6, (counter.tallied, counter.packets)
        assert counter.expected >= counter.packets > counter.frames
    finally:
        await sending.close()
        await receiving.close()


def test_latency_matches_each_arrival_to_its_send() -> None:
    """A publisher's send log and a probe's arrivals find each other by payload, whatever
    the server did to the header (sequence number, timestamp, SSRC, extensions, padding);
    a payload sent again later (a looping clip) is matched to the send before it."""
    at = {"sent": 0.0, "arrived": 0.0}
    sends = SendLog(clock=lambda: at["sent"])
    log = ArrivalLog()
    probe = ProbeCounter("video", "p1", clock=lambda: at["arrived"], log=log)
    sends.recording = log.recording = True
    payloads = [bytes([0x90, 0x80, i >> 8, i & 0xFF]) + bytes(range(40)) for i in range(400)]
    for loop in range(2):
        for i, payload in enumerate(payloads):
            at["sent"] = 100.0 * loop + i
            sent = RtpPacket(payload_type=97, sequence_number=i, ssrc=1, payload=payload)
            sent.extensions.abs_send_time, sent.padding_size = 123, 4 * (i % 3 == 0)
            sends.note(sent.serialize(HEADER_EXTENSIONS))
            at["arrived"] = at["sent"] + 0.001 * (i % 5 + 1)
            forwarded = RtpPacket(payload_type=100, sequence_number=9000 + i, ssrc=7)
            forwarded.payload, forwarded.padding_size = payload, 4 * (i % 2)
            probe.add(RtpPacket.parse(forwarded.serialize()))
    assert probe.packets == 800 and probe.added == 800
    # A quarter is sampled, the same quarter on both sides.
    assert 150 <= len(log.arrived) <= 250 and len(log.arrived) % 2 == 0
    sent = {"p1": send_times(sends.prints, sends.times)}
    found, missing = latencies(sent, log.arrived)
    assert missing == 0 and len(found) == len(log.arrived)
    assert sorted({round(delay, 6) for delay in found}) == [0.001, 0.002, 0.003, 0.004, 0.005]
    # Unknown publisher, or arrived before any send of it: not matched.
    publisher, print_, _ = log.arrived[0]
    assert latencies(sent, [("p2", print_, 1.0), (publisher, print_, -1.0)]) == ([], 2)


def test_client_load_judges_a_busy_or_late_client_as_the_limit() -> None:
    fine = {"cpu_percent": 40.0, "loop_lag_p95_ms": 3.0}
    assert not judge([fine, fine], cores=2).limited
    busy = judge([fine, {"cpu_percent": 97.0, "loop_lag_p95_ms": 4.0}], cores=2)
    assert busy.limited and "97 % of a core" in busy.why
    late = judge([fine, {"cpu_percent": 50.0, "loop_lag_p95_ms": 180.0}], cores=2)
    assert late.limited and "180 ms late" in late.why
    # Two processes at 40 % pinned to one core (with the runner's 10 %) fill it.
    shared = judge([fine, fine], cores=1, runner_cpu_percent=10.0)
    assert shared.limited and "90 % of the 1 core(s)" in shared.why
    assert judge([], cores=2).limited  # nothing known: not claimed to have kept up


async def test_client_load_probe_sees_a_blocked_event_loop() -> None:
    probe = ClientLoadProbe()
    probe.start()
    await asyncio.sleep(0)  # the probe's first tick is scheduled
    time.sleep(0.3)  # noqa: ASYNC251 -- the load being measured: the loop blocked on purpose
    ticks = len(probe._lags)
    while len(probe._lags) < ticks + 2:
        await asyncio.sleep(0.01)
    result = probe.result()
    probe.stop()
    assert result["loop_lag_max_ms"] >= 200
    assert result["cpu_percent"] > 0


def test_the_servers_delay_is_the_difference_of_two_scrapes() -> None:
    """Two scrapes of a node's /metrics; the window's packets (and copies) are what the
    second adds."""

    def histogram(metric: str, buckets: dict[str, int], total: float) -> list[str]:
        return [
            f"# TYPE {metric} histogram",
            *(f'{metric}_bucket{{le="{le}"}} {n}' for le, n in buckets.items()),
            f"{metric}_count {max(buckets.values())}",
            f"{metric}_sum {total}",
        ]

    def exposition(
        node: str,
        buckets: dict[str, int],
        total: float,
        copies: tuple[dict[str, int], float] | None = None,
        rtcp: tuple[dict[str, int], float] | None = None,
        loop: tuple[dict[str, int], float] | None = None,
        receivers: tuple[dict[str, int], int, int] | None = None,
    ) -> str:
        lines = ["# TYPE yitang_node_info gauge", f'yitang_node_info{{node="{node}"}} 1.0']
        lines += histogram("yitang_forward_delay_seconds", buckets, total)
        if receivers is not None:
            levels, down, up = receivers
            lines += ["# TYPE yitang_receivers gauge"]
            lines += [f'yitang_receivers{{link_level="{k}"}} {n}.0' for k, n in levels.items()]
            lines += [
                "# TYPE yitang_receiver_level_steps counter",
                f'yitang_receiver_level_steps_total{{direction="down"}} {down}.0',
                f'yitang_receiver_level_steps_total{{direction="up"}} {up}.0',
            ]
        if copies is not None:
            lines += histogram("yitang_forward_copy_delay_seconds", *copies)
        if rtcp is not None:
            lines += histogram("yitang_rtcp_handling_seconds", *rtcp)
        if loop is not None:
            lines += histogram("yitang_event_loop_busy_seconds", *loop)
        return "\n".join(lines) + "\n"

    node, before = parse_metrics(
        exposition(
            "n1",
            {"0.001": 500, "0.005": 900, "0.1": 1000, "+Inf": 1000},
            2.0,
            ({"0.001": 1500, "0.005": 2000, "0.1": 2000, "+Inf": 2000}, 3.0),
            ({"0.0001": 10, "0.0002": 40, "0.001": 50, "+Inf": 50}, 0.01),
            ({"0.001": 900, "0.005": 990, "0.025": 1000, "0.1": 1000, "+Inf": 1000}, 0.5),
            ({"full": 70, "reduced": 4, "audio_only": 10}, 30, 10),
        )
    )
    assert node == "n1" and before is not None
    # The window: 1000 packets; 600 under 1 ms, 390 more under 5 ms, 5 under 100 ms, 5 over.
    # Their 4000 copies: 3000 under 1 ms, 990 more under 5 ms, 10 under 100 ms.
    _, after = parse_metrics(
        exposition(
            "n1",
            {"0.001": 1100, "0.005": 1890, "0.1": 1995, "+Inf": 2000},
            4.5,
            ({"0.001": 4500, "0.005": 5990, "0.1": 6000, "+Inf": 6000}, 7.0),
            # 200 compound RTCP packets: 100 within 0.1 ms, 96 more within 0.2, 4 within 1.
            ({"0.0001": 110, "0.0002": 236, "0.001": 250, "+Inf": 250}, 0.04),
            # 1000 stretches of the loop: 980 within 1 ms, 17 within 5, 3 within 25.
            ({"0.001": 1880, "0.005": 1987, "0.025": 2000, "0.1": 2000, "+Inf": 2000}, 1.0),
            # The receivers' levels at the end; 2 steps down and 16 up in the window.
            ({"full": 82, "reduced": 2, "audio_only": 0}, 32, 26),
        )
    )
    assert after is not None
    held = window("n1", before, after)
    assert held == {
        "node": "n1",
        "packets": 1000,
        "mean_ms": 2.5,
        "p50_ms": round(1000 * 0.001 * 500 / 600, 3),  # the 500th of 600 in [0, 1 ms]
        "p99_ms": 5.0,  # the 990th is the last in (1 ms, 5 ms]
        "within_5ms": 0.99,
        "over_100ms": 5,
        "per_copy": {
            "copies": 4000,
            "mean_ms": 1.0,
            "p50_ms": round(1000 * 0.001 * 2000 / 3000, 3),  # the 2000th of 3000 in [0, 1 ms]
            # the 3960th: the 960th of 990 in (1 ms, 5 ms]
            "p99_ms": round(1000 * (0.001 + 0.004 * 960 / 990), 3),
            "within_5ms": 0.9975,
            "over_100ms": 0,
        },
        "rtcp": {
            "compound_packets": 200,
            "mean_ms": 0.15,
            "p50_ms": 0.1,  # the 100th is the last within 0.1 ms
            "p99_ms": round(1000 * (0.0002 + 0.0008 * 2 / 4), 3),  # the 198th: 2nd of 4 past 0.2
            "within_5ms": None,  # no bucket at 5 ms in this exposition
            "over_100ms": None,
        },
        "loop": {
            "stretches": 1000,
            "mean_ms": 0.5,
            "p50_ms": round(1000 * 0.001 * 500 / 980, 3),
            "p99_ms": round(1000 * (0.001 + 0.004 * 10 / 17), 3),  # the 990th: 10th of 17
            "within_5ms": 0.997,
            "over_100ms": 0,
            "over_5ms": 3,
            "longest_ms": 25.0,  # the highest bucket with any: (5 ms, 25 ms]
        },
        "receivers": {
            "levels": {"full": 82, "reduced": 2, "audio_only": 0},
            "steps_down": 2,
            "steps_up": 16,
        },
    }
    # A rank past the last bound has no upper bound to give.
    _, stalled = parse_metrics(
        exposition("n1", {"0.001": 1000, "0.005": 1000, "0.1": 1000, "+Inf": 2000}, 9.0)
    )
    assert stalled is not None
    stalled_window = window("n1", before, stalled)
    assert stalled_window is not None and stalled_window["p99_ms"] is None
    # A node that exports no copy delay, RTCP or loop time: the packets' figures alone.
    assert stalled_window["per_copy"] is None and stalled_window["rtcp"] is None
    assert stalled_window["loop"] is None and stalled_window["receivers"] is None
    # A node that exports no forward delay (the ingest not compiled).
    assert parse_metrics('# TYPE yitang_node_info gauge\nyitang_node_info{node="n2"} 1.0\n') == (
        "n2",
        None,
    )


def test_the_steal_of_each_cpu_is_its_share_of_the_window(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        "cpu  300 0 100 1500 0 0 0 100 50 0\n"
        "cpu0 100 0 50 800 0 0 0 50 50 0\n"
        "cpu1 200 0 50 700 0 0 0 50 0 0\nintr 12345\n"
    )
    before = read_ticks(stat)
    # (steal, all, busy: all but idle, iowait and steal, softirq)
    assert before == {"cpu0": (50, 1000, 150, 0), "cpu1": (50, 1000, 250, 0)}
    stat.write_text("cpu0 150 0 60 850 0 0 10 130 60 0\ncpu1 300 0 100 800 0 0 0 50 0 0\n")
    after = read_ticks(stat)
    assert after is not None
    # cpu0: 200 ticks passed, 80 of them stolen; cpu1: 250, none.
    assert steal_percent(before, after) == {"cpu0": 40.0, "cpu1": 0.0}
    # cpu0: 50 user, 10 system and 10 softirq of its 200 (50 idle, 80 stolen); cpu1: 150
    # of 250.
    assert busy_percent(before, after) == {
        "cpu0": {"busy": 35.0, "softirq": 5.0},
        "cpu1": {"busy": 60.0, "softirq": 0.0},
    }
    assert read_ticks(tmp_path / "absent") is None
