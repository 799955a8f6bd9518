"""Test helpers: real aiortc client peers talking to a MediaRoom over 127.0.0.1 only.

Each test client has a publish connection (it offers, sending a video track
whose frames carry a frame counter drawn as black/white blocks, and an audio
tone) and a subscribe connection (it answers the room's offers, decodes what it
receives and reads the counters back).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import ipaddress
import logging
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from server.media import (
    IceAddress,
    MediaConfig,
    MediaEvent,
    MediaNode,
    MediaRoom,
    SubscriberOffer,
)
from server.media.aiortc_internals import gather_only_on

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1",)


def loopback_config(**overrides: object) -> MediaConfig:
    """A MediaConfig whose ICE stays on 127.0.0.1 (gathering and accepted remotes)."""
    settings: dict[str, object] = {
        "ice_addresses": [IceAddress(local="127.0.0.1")],
        "ice_remote_allow": [ipaddress.ip_network("127.0.0.0/8")],
    }
    settings.update(overrides)
    return MediaConfig(**settings)  # type: ignore[arg-type]


def require_compiled(what: str, import_error: ImportError | None) -> None:
    """A compiled extension the test needs (``what``: "the compiled ingest"…; built if
    ``import_error`` is None). scripts/bootstrap builds it, so under CI (any value of
    ``CI``, as tests/helpers.py's require_tool) a missing one fails the test; elsewhere
    (a checkout built without a compiler) it skips, saying why."""
    if import_error is None:
        return
    message = f"{what} is not built: {import_error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class LoopTurns:
    """Counts the turns of the running event loop while a ``with`` block runs: a callback
    that schedules itself again runs once per turn. A coroutine that yields after each
    piece of its work shows as at least one turn per piece."""

    def __init__(self) -> None:
        self.count = 0
        self._ticking = False

    def _tick(self) -> None:
        self.count += 1
        if self._ticking:
            asyncio.get_running_loop().call_soon(self._tick)

    def __enter__(self) -> LoopTurns:
        self._ticking = True
        asyncio.get_running_loop().call_soon(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticking = False


class Signal:
    """Wakes waiters whenever something observable changed (no sleeping on guesses)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            event = self._event
            # Re-check at least every 250 ms: some conditions (e.g. GC) have no event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))


# --- Frame counter encoded as blocks --------------------------------------------------

_COLS, _ROWS = 5, 4  # 20 bits: 4 bits sender index + 16 bits counter
_BLACK, _WHITE = 16, 235


def _bits(sender: int, counter: int) -> list[int]:
    value = ((sender & 0xF) << 16) | (counter & 0xFFFF)
    return [(value >> (19 - i)) & 1 for i in range(_COLS * _ROWS)]


def make_counter_frame(sender: int, counter: int, width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame whose luma shows ``sender`` and ``counter`` as 5x4 blocks."""
    frame = av.VideoFrame(width, height, "yuv420p")
    bits = _bits(sender, counter)
    luma = frame.planes[0]
    stride = luma.line_size
    block_w, block_h = width // _COLS, height // _ROWS
    data = bytearray()
    for row_index in range(_ROWS):
        row = bytearray()
        for col in range(_COLS):
            width_here = block_w if col < _COLS - 1 else width - block_w * (_COLS - 1)
            row += bytes([_WHITE if bits[row_index * _COLS + col] else _BLACK]) * width_here
        row = row.ljust(stride, b"\x00")
        lines = block_h if row_index < _ROWS - 1 else height - block_h * (_ROWS - 1)
        data += bytes(row) * lines
    luma.update(bytes(data[: luma.buffer_size].ljust(luma.buffer_size, b"\x00")))
    for plane in frame.planes[1:]:
        plane.update(b"\x80" * plane.buffer_size)
    return frame


def read_counter_frame(frame: av.VideoFrame) -> tuple[int, int]:
    """(sender, counter) read back from a decoded frame made by make_counter_frame."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    luma = frame.planes[0]
    data = bytes(luma)
    stride = luma.line_size
    block_w, block_h = frame.width // _COLS, frame.height // _ROWS
    value = 0
    for i in range(_COLS * _ROWS):
        row, col = divmod(i, _COLS)
        x = col * block_w + block_w // 2
        y = row * block_h + block_h // 2
        value = (value << 1) | (1 if data[y * stride + x] > 128 else 0)
    return value >> 16, value & 0xFFFF


class CounterVideoTrack(VideoStreamTrack):
    """30 fps video whose frames carry (sender index, frame counter)."""

    def __init__(self, sender: int, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self.sender = sender
        self.width = width
        self.height = height
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = make_counter_frame(self.sender, self.sent, self.width, self.height)
        self.sent += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """20 ms frames of a 440 Hz tone; ``amplitude`` 0 is silence (settable live)."""

    kind = "audio"

    def __init__(self, amplitude: float = 0.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._start: float | None = None
        self._timestamp = 0
        self._rate = 8000
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(0.020 * self._rate)
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += samples
            await asyncio.sleep(self._start + self._timestamp / self._rate - time.time())
        peak = int(32767 * max(0.0, min(1.0, self.amplitude)))
        pcm = b"".join(
            struct.pack(
                "<h", int(peak * math.sin(2 * math.pi * 440 * (self._timestamp + i) / self._rate))
            )
            for i in range(samples)
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.pts = self._timestamp
        frame.sample_rate = self._rate
        frame.time_base = fractions.Fraction(1, self._rate)
        self.sent += 1
        return frame


# --- Client peers -------------------------------------------------------------------------


@dataclass
class ReceivedTrack:
    """One track a test client receives, with what it decoded."""

    track_id: str
    kind: str
    track: MediaStreamTrack
    frames: int = 0
    counters: list[tuple[int, int]] = field(default_factory=list)
    first_frame_at: float | None = None
    ended: bool = False
    #: (width, height) of each decoded video frame, in order.
    sizes: list[tuple[int, int]] = field(default_factory=list)
    #: The RTP timestamp (90 kHz) of each decoded video frame, in order: which of the
    #: publisher's frames arrived, whenever they arrived.
    timestamps: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def publisher_id(self) -> str:
        return self.track_id.rsplit("-", 2)[0]


def client_configuration() -> RTCConfiguration:
    # No STUN server: aiortc's default would send packets to a public server.
    # max-bundle: with aiortc's default ("balanced"), an offer with two video
    # m-lines leaves the second on a transport that BUNDLE then discards, and
    # that track never receives anything (an aiortc client bug, not the server's).
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class MediaTestClient:
    """A participant's browser, played by two aiortc peer connections."""

    def __init__(
        self,
        harness: RoomHarness,
        participant_id: str,
        index: int,
        *,
        video: bool = True,
        audio: bool = True,
        amplitude: float = 0.0,
        width: int = 160,
        height: int = 120,
        low_video: tuple[int, int] | None = None,
    ) -> None:
        self.harness = harness
        #: A second, low encoding of the camera (width, height), declared as such.
        self.low_video = CounterVideoTrack(index, *low_video) if low_video and video else None
        self.participant_id = participant_id
        self.index = index
        self.video = CounterVideoTrack(index, width, height) if video else None
        self.audio = ToneAudioTrack(amplitude) if audio else None
        self.pub_pc: RTCPeerConnection | None = None
        self.sub_pc: RTCPeerConnection | None = None
        self.received: dict[str, ReceivedTrack] = {}
        self.offers = 0
        self.connected_at: float | None = None
        self.closed = False

    @property
    def room(self) -> MediaRoom:
        return self.harness.room

    async def join(self, *, can_publish: bool = True, publish: bool = True) -> None:
        await self.room.add_participant(self.participant_id, can_publish=can_publish)
        if publish:
            await self.publish()

    async def make_publish_offer(self) -> str:
        pc = self.pub_pc = RTCPeerConnection(client_configuration())
        for track in (self.audio, self.video, self.low_video):
            if track is not None:
                pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    def low_video_mids(self) -> dict[str, str] | None:
        """{low mid: high mid} of the published camera, if it sends a low encoding."""
        if self.low_video is None or self.pub_pc is None:
            return None
        mids = {t.sender.track: t.mid for t in self.pub_pc.getTransceivers()}
        low, high = mids[self.low_video], mids[self.video]
        assert low is not None and high is not None
        return {low: high}

    async def publish(self) -> None:
        with gather_only_on(LOOPBACK):
            offer = await self.make_publish_offer()
        answer = await self.room.publish(
            self.participant_id, offer, low_video=self.low_video_mids()
        )
        assert self.pub_pc is not None
        await self.pub_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def on_subscriber_offer(self, sdp: str) -> None:
        if self.closed:
            return  # a late event: do not create a connection nobody will close
        self.offers += 1
        if self.sub_pc is None:
            pc = self.sub_pc = RTCPeerConnection(client_configuration())
            pc.on("track", self._on_track)

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected" and self.connected_at is None:
                    self.connected_at = time.monotonic()
                self.harness.signal.notify()

        pc = self.sub_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        answer = await pc.createAnswer()
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(answer)
        if self.closed:
            return
        await self.room.subscriber_answer(self.participant_id, pc.localDescription.sdp)
        self.harness.signal.notify()

    def _on_track(self, track: MediaStreamTrack) -> None:
        received = ReceivedTrack(track_id=track.id, kind=track.kind, track=track)
        self.received[track.id] = received
        received.task = asyncio.create_task(self._consume(received))
        self.harness.signal.notify()

    async def _consume(self, received: ReceivedTrack) -> None:
        try:
            while True:
                frame = await received.track.recv()
                received.frames += 1
                if received.first_frame_at is None:
                    received.first_frame_at = time.monotonic()
                if received.kind == "video":
                    received.counters.append(read_counter_frame(frame))
                    received.sizes.append((frame.width, frame.height))
                    received.timestamps.append(int(frame.pts))
                self.harness.signal.notify()
        except MediaStreamError:
            received.ended = True
            self.harness.signal.notify()

    def tracks_from(self, publisher_id: str, kind: str | None = None) -> list[ReceivedTrack]:
        return [
            r
            for r in self.received.values()
            if r.publisher_id == publisher_id and (kind is None or r.kind == kind)
        ]

    def frames_from(self, publisher_id: str, kind: str) -> int:
        return sum(r.frames for r in self.tracks_from(publisher_id, kind) if not r.ended)

    async def close(self) -> None:
        self.closed = True
        for received in self.received.values():
            if received.task is not None:
                received.task.cancel()
        await asyncio.gather(
            *(r.task for r in self.received.values() if r.task is not None),
            return_exceptions=True,
        )
        for pc in (self.pub_pc, self.sub_pc):
            if pc is not None:
                await pc.close()
        self.pub_pc = self.sub_pc = None


class RoomHarness:
    """A MediaNode with one room whose events route subscriber offers to test clients."""

    def __init__(self, config: MediaConfig | None = None, room_id: str = "room-1") -> None:
        self.signal = Signal()
        self.node = MediaNode(config or loopback_config())
        self.events: list[MediaEvent] = []
        self.clients: dict[str, MediaTestClient] = {}
        self.room = self.node.room(room_id, on_event=self._on_event)

    async def _on_event(self, event: MediaEvent) -> None:
        self.events.append(event)
        if isinstance(event, SubscriberOffer):
            client = self.clients.get(event.participant_id)
            if client is not None:
                await client.on_subscriber_offer(event.sdp)
        self.signal.notify()

    def offers_for(self, participant_id: str) -> list[str]:
        """The SubscriberOffers sent so far for a participant, oldest first."""
        return [
            e.sdp
            for e in self.events
            if isinstance(e, SubscriberOffer) and e.participant_id == participant_id
        ]

    async def wait_for_offer(self, participant_id: str, within: float = 10) -> str:
        """The latest SubscriberOffer for a participant that has no test client."""
        await self.wait_until(
            lambda: bool(self.offers_for(participant_id)),
            f"an offer for {participant_id}",
            within,
        )
        return self.offers_for(participant_id)[-1]

    def client(self, participant_id: str, **kwargs: object) -> MediaTestClient:
        client = MediaTestClient(self, participant_id, len(self.clients) + 1, **kwargs)  # type: ignore[arg-type]
        self.clients[participant_id] = client
        return client

    async def wait_until(
        self, predicate: Callable[[], bool], what: str, within: float = 15
    ) -> None:
        await self.signal.wait_until(predicate, within, what)

    async def close(self) -> None:
        # The node first: no more offers are delivered while clients close.
        await self.node.close()
        for client in list(self.clients.values()):
            await client.close()


# --- Proof that the server never decodes or encodes ---------------------------------------


class CodecUsageProbe:
    """Counts frames decoded per receiver and frames encoded per sender, process-wide.

    aiortc decodes in a thread started by ``RTCRtpReceiver.receive()`` (fed only
    with what the jitter buffer returns) and encodes in
    ``RTCRtpSender._next_encoded_frame``. Wrapping those two points attributes
    every decode and encode to the receiver or sender object that did it, so
    the test can tell the server's objects from the test clients' in the same
    process.
    """

    def __init__(self, monkeypatch: object) -> None:
        import aiortc.rtcrtpreceiver as receiver_module
        import aiortc.rtcrtpsender as sender_module

        self.decoded: dict[int, int] = {}  # id(track queue) -> frames into the decoder
        self.receiver_queue: dict[int, int] = {}  # id(receiver) -> id(track queue)
        self.encoded: dict[int, int] = {}  # id(sender) -> frames encoded/packed
        original_worker = receiver_module.decoder_worker
        original_receive = receiver_module.RTCRtpReceiver.receive
        original_next = sender_module.RTCRtpSender._next_encoded_frame
        probe = self

        class CountingQueue:
            def __init__(self, inner: object, key: int) -> None:
                self.inner = inner
                self.key = key

            def get(self) -> object:
                item = self.inner.get()  # type: ignore[attr-defined]
                if item is not None:
                    probe.decoded[self.key] = probe.decoded.get(self.key, 0) + 1
                return item

        def worker(loop: object, input_q: object, output_q: object, error: object) -> None:
            original_worker(loop, CountingQueue(input_q, id(output_q)), output_q, error)

        async def receive(self: object, parameters: object) -> None:
            track = self.track  # type: ignore[attr-defined]
            if track is not None:
                probe.receiver_queue[id(self)] = id(track._queue)
            await original_receive(self, parameters)  # type: ignore[arg-type]

        async def next_encoded_frame(self: object, codec: object) -> object:
            probe.encoded[id(self)] = probe.encoded.get(id(self), 0) + 1
            return await original_next(self, codec)  # type: ignore[arg-type]

        mp = monkeypatch
        mp.setattr(receiver_module, "decoder_worker", worker)  # type: ignore[attr-defined]
        mp.setattr(receiver_module.RTCRtpReceiver, "receive", receive)  # type: ignore[attr-defined]
        mp.setattr(sender_module.RTCRtpSender, "_next_encoded_frame", next_encoded_frame)  # type: ignore[attr-defined]

    def frames_decoded_by(self, receiver: object) -> int:
        queue = self.receiver_queue.get(id(receiver))
        return 0 if queue is None else self.decoded.get(queue, 0)

    def frames_encoded_by(self, sender: object) -> int:
        return self.encoded.get(id(sender), 0)

    @property
    def total_decoded(self) -> int:
        return sum(self.decoded.values())

    @property
    def total_encoded(self) -> int:
        return sum(self.encoded.values())
