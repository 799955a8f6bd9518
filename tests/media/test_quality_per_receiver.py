"""Quality per receiver with real aiortc peers: the spotlight in the high encoding,
tiles in the low one, hidden tiles get nothing, and a weak link steps one receiver
down (and back up) without touching what the others get."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from media_testkit import (
    LOOPBACK,
    MediaTestClient,
    RoomHarness,
    client_configuration,
    loopback_config,
)

from server.loadtest.clip import ClipTrack, encode_video
from server.media import PublisherHint, VideoQuality
from server.media.aiortc_internals import RECEIVER_ATTRIBUTES, gather_only_on
from server.media.forwarding_sender import ForwardingSender
from server.media.quality_tiers import TierThresholds
from server.metrics.media_collector import MediaCollector
from server.metrics.receiver_reports import ReceiverReportSampler
from server.metrics.server_metrics import ServerMetrics
from tests.lossy_relay import LossyRelay

HIGH = (320, 240)
LOW = (160, 120)
SINGLE = (240, 180)


def last_size(client: MediaTestClient, publisher: str) -> tuple[int, int] | None:
    tracks = [t for t in client.tracks_from(publisher, "video") if not t.ended]
    return tracks[-1].sizes[-1] if tracks and tracks[-1].sizes else None


def frames(client: MediaTestClient, publisher: str) -> int:
    return client.frames_from(publisher, "video")


@pytest.fixture
async def tiers_harness() -> AsyncIterator[RoomHarness]:
    # Short windows, so that a step down and up takes seconds, not a minute. The test is
    # about loss: jitter (unit-tested) is left out, since on a busy machine the test
    # process itself (encoding and decoding every peer) makes the receivers' jitter.
    tiers = TierThresholds(window=1.5, hold=1.5, up_after=3.0, max_up_after=6.0, down_jitter=5.0)
    h = RoomHarness(loopback_config(tiers=tiers))
    try:
        yield h
    finally:
        await h.close()


async def test_spotlight_high_tiles_low_switched_at_a_floor_change(harness: RoomHarness) -> None:
    room = harness.room
    a = harness.client("A", audio=False, width=HIGH[0], height=HIGH[1], low_video=LOW)
    b = harness.client("B", audio=False, width=HIGH[0], height=HIGH[1], low_video=LOW)
    d = harness.client("D", audio=False, width=SINGLE[0], height=SINGLE[1])  # one encoding
    c = harness.client("C", video=False, audio=False)
    room.set_spotlight({"A"})
    for client in (a, b, d):
        await client.join()
    await c.join(can_publish=False, publish=False)

    await harness.wait_until(
        lambda: (last_size(c, "A"), last_size(c, "B"), last_size(c, "D")) == (HIGH, LOW, SINGLE),
        "C: the spotlight A high, the tile B low, D (one encoding) in its only one",
    )
    # A camera is one track for its receivers: the low encoding is no track of its own.
    assert len(c.tracks_from("A", "video")) == 1
    assert len([t for t in room.tracks() if t.kind == "video"]) == 3
    # A publisher receives the others the same way: B is a tile for A too.
    await harness.wait_until(lambda: last_size(a, "B") == LOW, "A gets B's tile low")

    # The floor passes to B: C's slots swap encodings at keyframes, no renegotiation.
    offers = c.offers
    started = time.monotonic()
    room.set_spotlight({"B"})
    await harness.wait_until(
        lambda: (last_size(c, "A"), last_size(c, "B")) == (LOW, HIGH), "C: B high, A low"
    )
    switched_in = time.monotonic() - started
    assert c.offers == offers
    # At the next keyframe, asked for at once (a fraction of a second on a quiet machine),
    # not at the encoder's own next keyframe. The bound allows for a busy machine: the
    # server, the four clients and their encoders share this one process (1.04 s was
    # seen beside a CPU hog).
    assert switched_in < 3.0, f"the spotlight switched in {switched_in:.2f} s"
    # The decoder saw one continuous stream: frames keep coming on the same track.
    before = frames(c, "A")
    await harness.wait_until(lambda: frames(c, "A") >= before + 10, "A's tile keeps playing")

    # C hides its tiles (phone layout): only the spotlight's video still comes.
    room.set_view("C", pinned=None, tiles_visible=False)
    await harness.wait_until(
        lambda: room.video_quality("C")[1] == {"A": "off", "B": "high", "D": "off"},
        "C's hidden tiles are off",
    )
    tiles_then = frames(c, "A") + frames(c, "D")
    spotlight_then = frames(c, "B")
    await harness.wait_until(lambda: frames(c, "B") >= spotlight_then + 30, "the spotlight plays")
    assert frames(c, "A") + frames(c, "D") <= tiles_then + 5  # what was in flight at most

    # C pins A in its own spotlight: A high for C, while everyone else keeps B large.
    room.set_view("C", pinned="A", tiles_visible=True)
    await harness.wait_until(
        lambda: (last_size(c, "A"), last_size(c, "B"), last_size(c, "D")) == (HIGH, LOW, SINGLE),
        "C's pin: A high, B low",
    )
    assert room.video_quality("D")[1] == {"A": "low", "B": "high"}


class RelayedClient(MediaTestClient):
    """A receiver whose subscribe connection goes through a lossy UDP relay both ways."""

    relay: LossyRelay

    async def on_subscriber_offer(self, sdp: str) -> None:
        if self.closed:
            return
        self.offers += 1
        if self.sub_pc is None:
            pc = self.sub_pc = RTCPeerConnection(client_configuration())
            pc.on("track", self._on_track)
            pc.on("connectionstatechange", self.harness.signal.notify)
            # The server's candidate, as the client sees it: the relay's listening port.
            server_port = int(_candidate_port(sdp))
            self.relay = LossyRelay(("127.0.0.1", server_port))
            await self.relay.start()
        pc = self.sub_pc
        sdp = _replace_candidate_ports(sdp, self.relay.port)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        answer = await pc.createAnswer()
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(answer)
        local = pc.localDescription.sdp
        # The client's candidate, as the server sees it: the relay's socket for the client.
        upstream = await self.relay.open_for(("127.0.0.1", int(_candidate_port(local))))
        await self.room.subscriber_answer(
            self.participant_id, _replace_candidate_ports(local, upstream)
        )
        self.harness.signal.notify()

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "relay"):
            self.relay.close()


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host.*)$", re.M)


def _candidate_port(sdp: str) -> str:
    ports = {m.group(2) for m in _CANDIDATE.finditer(sdp)}
    assert len(ports) == 1, f"expected one loopback host candidate, got {ports}"
    return ports.pop()


def _replace_candidate_ports(sdp: str, port: int) -> str:
    return _CANDIDATE.sub(lambda m: f"{m.group(1)}{port}{m.group(3)}", sdp)


def _levels(harness: RoomHarness, pid: str) -> list[str]:
    levels = [
        e.level for e in harness.events if isinstance(e, VideoQuality) and e.participant_id == pid
    ]
    return levels


#: The fine receiver's window: 3 s of the publisher's frames (30 fps, 90 kHz RTP clock),
#: about as long as the weak receiver takes to step down twice (a longer loss would
#: change the steps the test expects).
WINDOW_FRAMES = 90
FRAME_TICKS = 90_000 // 30


def pre_encoded_high(client: MediaTestClient) -> MediaTestClient:
    """Make `client` send its camera's high encoding pre-encoded, paced by the clock.

    aiortc's live VP8 encoder falls behind on a busy machine; pre-encoded frames go out
    at exactly 30 per second of media time (frame n has RTP timestamp n x 3000 plus the
    stream's offset), so a receiver's share of them is a property of the forwarding.
    (They have a keyframe every second whatever is asked. The low encoding stays live:
    the weak receiver must decode it between two steps down, which on a lossy link
    takes the keyframe its PLI asks for.)
    """
    client.video = ClipTrack(encode_video("vp8", *HIGH, 30, 300_000))  # type: ignore[assignment]
    return client


def frames_in_window(timestamps: list[int], start: int) -> set[int]:
    """The distinct frames (RTP timestamps) within WINDOW_FRAMES frames from `start`."""
    span = WINDOW_FRAMES * FRAME_TICKS
    return {t for t in timestamps if (t - start) % 2**32 < span}


def window_complete(timestamps: list[int], start: int) -> bool:
    """A frame from past the window arrived (and a little more: one reordered at its end)."""
    span = WINDOW_FRAMES * FRAME_TICKS
    return any(span + 10 * FRAME_TICKS <= (t - start) % 2**32 < 2**31 for t in timestamps)


async def test_a_lossy_receiver_steps_down_and_back_up_alone(tiers_harness: RoomHarness) -> None:
    harness = tiers_harness
    room = harness.room
    a = pre_encoded_high(harness.client("A", width=HIGH[0], height=HIGH[1], low_video=LOW))
    weak = RelayedClient(harness, "W", 2, video=False, audio=False)
    harness.clients["W"] = weak
    fine = harness.client("F", video=False, audio=False)
    room.set_spotlight({"A"})
    await a.join()
    await weak.join(can_publish=False, publish=False)
    await fine.join(can_publish=False, publish=False)
    await harness.wait_until(
        lambda: last_size(weak, "A") == HIGH and last_size(fine, "A") == HIGH,
        "both receivers get the spotlight high",
    )
    assert weak.relay.passed > 0  # W's media really goes through the relay
    high = room.track_forwarder(next(t.track_id for t in room.tracks() if t.kind == "video"))
    plis_before, started = high.plis_sent, time.monotonic()

    (fine_track,) = [t for t in fine.tracks_from("A", "video") if not t.ended]
    first_index = len(fine_track.timestamps)
    weak.relay.loss = 0.25
    await harness.wait_until(
        lambda: room.video_quality("W")[0] == "reduced", "W steps down to low", within=30
    )
    await harness.wait_until(
        lambda: last_size(weak, "A") == LOW, "W gets the spotlight in the low encoding"
    )
    await harness.wait_until(
        lambda: room.video_quality("W") == ("audio_only", {"A": "off"}),
        "W steps down to audio only",
        within=30,
    )
    await harness.wait_until(
        lambda: any(
            isinstance(e, VideoQuality) and e.participant_id == "W" and e.paused == 1
            for e in harness.events
        ),
        "W is told its video is paused for one venue",
    )
    # Meanwhile the unshaped receiver kept the high encoding, at the publisher's 30 fps:
    # of the 90 frames A sent from when W's link turned lossy (3 s of A's media clock),
    # F decoded at least 29/30, all high. Counted by RTP timestamp, so a busy machine
    # may delay frames but not make them count as missing; W stays shaped meanwhile.
    await harness.wait_until(
        lambda: len(fine_track.timestamps) > first_index, "F keeps receiving A"
    )
    start = fine_track.timestamps[first_index]
    await harness.wait_until(
        lambda: window_complete(fine_track.timestamps, start),
        "F received 3 s of A's frames while W was shaped",
        within=60,
    )
    in_window = frames_in_window(fine_track.timestamps, start)
    window_sizes = {
        size
        for size, t in zip(fine_track.sizes, fine_track.timestamps, strict=True)
        if t in in_window
    }
    assert len(in_window) >= WINDOW_FRAMES * 29 // 30, (
        f"F got {len(in_window)} of A's {WINDOW_FRAMES} high frames while W was shaped"
    )
    assert window_sizes == {HIGH}
    assert room.video_quality("W")[0] != "full"  # the window ended while W was stepped down
    assert room.video_quality("F") == ("full", {"A": "high"})
    assert last_size(fine, "A") == HIGH

    weak.relay.loss = 0.0
    await harness.wait_until(
        lambda: room.video_quality("W")[0] == "full", "W steps back up", within=45
    )
    try:
        await harness.wait_until(
            lambda: last_size(weak, "A") == HIGH, "W gets high again", within=30
        )
    except AssertionError as exc:
        tracks = [(t.track_id, t.frames, t.sizes[-3:]) for t in weak.received.values()]
        raise AssertionError(
            f"{exc}: {room.video_quality('W')}, levels {_levels(harness, 'W')}, tracks {tracks}"
        ) from None
    elapsed = time.monotonic() - started
    assert _levels(harness, "W") == ["reduced", "audio_only", "reduced", "full"]
    assert "reduced" not in _levels(harness, "F")
    assert room.video_quality("F") == ("full", {"A": "high"})
    # W's keyframe requests were rate-limited for W alone (or went to the low encoding):
    # the publisher's high encoding was asked for at most one keyframe per second.
    plis = high.plis_sent - plis_before
    assert plis <= elapsed + 3, f"{plis} PLIs to the publisher's high encoding in {elapsed:.0f} s"


async def _receiver_stepped_down_to_audio_only(
    harness: RoomHarness, publisher: MediaTestClient
) -> RelayedClient:
    """W, receiving `publisher` (A) through a relay that then loses 25 %, once W's link
    has stepped down to audio only (the relay still lossy)."""
    weak = RelayedClient(harness, "W", 2, video=False, audio=False)
    harness.clients["W"] = weak
    await publisher.join()
    await weak.join(can_publish=False, publish=False)
    await harness.wait_until(lambda: frames(weak, "A") >= 10, "W gets A's video")
    weak.relay.loss = 0.25
    await harness.wait_until(
        lambda: harness.room.video_quality("W") == ("audio_only", {"A": "off"}),
        "W steps down to audio only",
        within=30,
    )
    return weak


async def test_a_receiver_at_audio_only_steps_up_though_its_paused_video_reports_old_jitter(
    tiers_harness: RoomHarness,
) -> None:
    # aiortc's receiver goes on reporting a stream it no longer gets, every second, with
    # the jitter of its last packet frozen. In a load test's join burst receivers stepped
    # down to audio only with a high jitter frozen in their paused videos' reports, and
    # stayed there for the rest of the session although their links were clean: each
    # such report said "not clean". A report that saw no new packet is not judged.
    harness = tiers_harness
    room = harness.room
    # A sends audio and video: at audio only, W's audio still reports.
    weak = await _receiver_stepped_down_to_audio_only(harness, harness.client("A"))
    # What W's client will report of the video it no longer gets: a jitter of 4 s (the
    # harness's clean link needs under 2.5 s), frozen as a burst would have left it.
    assert weak.sub_pc is not None
    (video_receiver,) = [
        r for r in weak.sub_pc.getReceivers() if r.track is not None and r.track.kind == "video"
    ]
    streams = getattr(video_receiver, RECEIVER_ATTRIBUTES["remote_streams"])
    assert streams, "W's client has statistics of A's video to report"
    for stream in streams.values():
        stream._jitter_q4 = 4 * 90_000 * 16
    video_senders = [
        s
        for s in room._participants["W"].subscribe.senders
        if isinstance(s, ForwardingSender) and s.kind == "video"
    ]
    stale_before = sum(s.reports_stale for s in video_senders)

    weak.relay.loss = 0.0
    await harness.wait_until(
        lambda: room.video_quality("W")[0] == "full", "W steps back up", within=45
    )
    assert _levels(harness, "W")[-2:] == ["reduced", "full"]
    assert sum(s.reports_stale for s in video_senders) > stale_before, (
        "W's client reported the paused video meanwhile"
    )
    # An operator sees the same in /metrics: W (the one receiver: it publishes nothing for
    # A to receive) back at full, after as many steps up as down.
    collector = MediaCollector(lambda: harness.node, ReceiverReportSampler(
        lambda: harness.node, ServerMetrics("node-test"), interval=3600
    ))  # fmt: skip
    await collector.refresh()
    exported = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in collector.collect()
        for sample in family.samples
    }
    assert exported[("yitang_receivers", ("full",))] == 1
    assert exported[("yitang_receivers", ("audio_only",))] == 0
    # Two steps each way at least (a step up that failed on a busy machine adds a pair).
    steps_down = exported[("yitang_receiver_level_steps_total", ("down",))]
    steps_up = exported[("yitang_receiver_level_steps_total", ("up",))]
    assert steps_down >= 2 and steps_up == steps_down
    await harness.wait_until(lambda: frames(weak, "A") >= 20, "W gets A's video again")


async def test_a_receiver_at_audio_only_with_nothing_flowing_steps_up_as_a_probe(
    tiers_harness: RoomHarness,
) -> None:
    # A sends video and no audio: once W is stepped down to audio only, nothing flows to
    # W, so no report of W's judges its link. W steps up as a probe after a quiet while,
    # and on a link clean again its video's reports take it back to full.
    harness = tiers_harness
    room = harness.room
    weak = await _receiver_stepped_down_to_audio_only(harness, harness.client("A", audio=False))
    weak.relay.loss = 0.0
    received = frames(weak, "A")
    await harness.wait_until(
        lambda: room.video_quality("W")[0] == "full", "W steps back up", within=45
    )
    assert _levels(harness, "W")[-2:] == ["reduced", "full"]
    await harness.wait_until(lambda: frames(weak, "A") >= received + 10, "W gets video again")


class RelayedPublisher(MediaTestClient):
    """A publisher whose publish connection goes through a lossy UDP relay both ways."""

    relay: LossyRelay

    async def publish(self) -> None:
        with gather_only_on(LOOPBACK):
            offer = await self.make_publish_offer()
        self.relay = LossyRelay(("127.0.0.1", 0))
        await self.relay.start()
        upstream = await self.relay.open_for(("127.0.0.1", int(_candidate_port(offer))))
        answer = await self.room.publish(
            self.participant_id,
            _replace_candidate_ports(offer, upstream),
            low_video=self.low_video_mids(),
        )
        self.relay.upstream = ("127.0.0.1", int(_candidate_port(answer)))
        assert self.pub_pc is not None
        await self.pub_pc.setRemoteDescription(
            RTCSessionDescription(
                sdp=_replace_candidate_ports(answer, self.relay.port), type="answer"
            )
        )

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "relay"):
            self.relay.close()


async def test_a_lossy_publisher_is_hinted_to_lower_its_bitrate(harness: RoomHarness) -> None:
    room = harness.room
    publisher = RelayedPublisher(harness, "P", 1, audio=False)
    harness.clients["P"] = publisher
    receiver = harness.client("R", video=False, audio=False)
    await publisher.join()
    await receiver.join(can_publish=False, publish=False)
    await harness.wait_until(lambda: frames(receiver, "P") >= 10, "R gets P's video")

    def hints() -> list[int | None]:
        return [
            e.max_bitrate
            for e in harness.events
            if isinstance(e, PublisherHint) and e.participant_id == "P"
        ]

    assert hints() == []  # a clean uplink: no cap
    publisher.relay.loss = 0.3
    await harness.wait_until(lambda: len(hints()) >= 1, "P is hinted to send less", within=30)
    first = hints()[0]
    assert first is not None and first <= 1_000_000
    assert not any(isinstance(e, PublisherHint) and e.participant_id == "R" for e in harness.events)
    publisher.relay.loss = 0.0
    lowest = min(h for h in hints() if h is not None)
    await harness.wait_until(
        lambda: hints()[-1] is None or (hints()[-1] or 0) > lowest,
        "a clean uplink raises the cap again",
        within=40,
    )
    assert room.stats().packets_received > 0


async def test_a_lossy_publisher_does_not_step_its_receivers_down(
    tiers_harness: RoomHarness,
) -> None:
    # The publisher's uplink loses packets for good (no retransmission: its NACKs are
    # dropped), so its receivers see the gaps: they report that loss, but their own
    # links are clean, and they keep the level they have. A receiver whose own link
    # then turns lossy still steps down.
    harness = tiers_harness
    room = harness.room
    publisher = RelayedPublisher(harness, "P", 1, audio=False)
    harness.clients["P"] = publisher
    weak = RelayedClient(harness, "W", 2, video=False, audio=False)
    harness.clients["W"] = weak
    fine = harness.client("F", video=False, audio=False)
    await publisher.join()
    publisher.relay.loss_to_client = 0.0
    publisher.relay.drop_nacks_to_client = True
    await weak.join(can_publish=False, publish=False)
    await fine.join(can_publish=False, publish=False)
    await harness.wait_until(
        lambda: frames(fine, "P") >= 10 and frames(weak, "P") >= 10, "both get P's video"
    )
    (sender,) = [s.sender for s in room._participants["F"].subscribe._subs.values()]
    reports: list[tuple[float, float]] = []
    on_report = sender.on_report
    assert on_report is not None

    def record(fraction_lost: float, jitter: float) -> None:
        reports.append(sender.last_report_loss)
        on_report(fraction_lost, jitter)

    sender.on_report = record
    publisher.relay.loss = 0.3
    await harness.wait_until(
        lambda: sum(1 for reported, upstream in reports if reported >= 0.15 and upstream > 0) >= 8,
        "F reports the publisher's loss 8 times",
        within=40,
    )
    assert room.video_quality("F")[0] == "full"
    assert room.video_quality("W")[0] == "full"
    assert _levels(harness, "F") == [] and _levels(harness, "W") == []

    # W's own link turns lossy too: that loss is W's, and W steps down alone.
    weak.relay.loss = 0.25
    await harness.wait_until(
        lambda: room.video_quality("W")[0] != "full", "W steps down", within=30
    )
    assert room.video_quality("F")[0] == "full"


async def test_the_first_report_after_a_pause_does_not_judge_the_link(
    tiers_harness: RoomHarness,
) -> None:
    # A receiver learns that packets sent just before a pause were lost only from the
    # first packet after it, so its first report after a pause counts that loss: it is
    # about the level that was left (a weak link stepped down to audio only), and must
    # not step the resumed video down again on a link that is now clean.
    harness = tiers_harness
    room = harness.room
    publisher = harness.client("P", audio=False)
    weak = RelayedClient(harness, "W", 2, video=False, audio=False)
    harness.clients["W"] = weak
    await publisher.join()
    await weak.join(can_publish=False, publish=False)
    await harness.wait_until(lambda: frames(weak, "P") >= 10, "W gets P's video")
    (sender,) = [s.sender for s in room._participants["W"].subscribe._subs.values()]
    channel = sender.channel
    assert channel is not None
    judged: list[float] = []
    on_report = sender.on_report
    assert on_report is not None

    def record(fraction_lost: float, jitter: float) -> None:
        judged.append(fraction_lost)
        on_report(fraction_lost, jitter)

    sender.on_report = record
    # The last 20 packets before the pause never reach W; then the link is clean again.
    weak.relay.loss = 1.0
    sent = channel.packets_sent
    await harness.wait_until(lambda: channel.packets_sent >= sent + 20, "20 packets lost")
    sender.set_paused(True)
    weak.relay.loss = 0.0
    received = frames(weak, "P")
    judged.clear()
    sender.set_paused(False)
    await harness.wait_until(
        lambda: frames(weak, "P") >= received + 10 and len(judged) >= 2,
        "W gets video again, and two reports are judged",
        within=30,
    )
    # The report that counted the 20 (aiortc's receiver counts a retransmission on the
    # RTX stream, not as received on the media stream) was not judged.
    assert max(judged) < 0.05, judged
    assert sender.reports_skipped == 1
    assert room.video_quality("W")[0] == "full"
