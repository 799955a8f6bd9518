"""Client processes for bench/forwarding.py: one publisher, subscribers, a late joiner.

Each runs its own event loop with aiortc peers on 127.0.0.1 only. It talks to
the server process over one pipe (SDP messages) and to the orchestrator over
another (commands and counters).

Subscribers do not decode video (except the late joiner): with 16 subscribers
on 2 cores, decoders would measure the clients, not the server. They replace
each receiver's jitter buffer with a counter of RTP packets and frames (a video
frame = a packet with the marker bit), which is what forwarding delivers.
Audio is counted in packets (one Opus packet = one 20 ms frame).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.rtp import RtpPacket

from server.media.aiortc_internals import gather_only_on, install_jitter_buffer

LOOPBACK = ("127.0.0.1",)
WIDTH, HEIGHT = 640, 480


def client_configuration() -> RTCConfiguration:
    """No STUN (nothing leaves the host); max-bundle (aiortc's balanced mode drops tracks)."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class MovingVideoTrack(VideoStreamTrack):
    """640x480 at 30 fps: a scrolling pattern with a noisy patch, like a busy webcam.

    Pure noise would make VP8 produce ~10 Mbit/s, far from a real camera; a
    static image almost nothing. A scrolling pattern plus a small noisy area
    keeps the encoder near its target bitrate (~0.5-1.5 Mbit/s).
    """

    def __init__(self) -> None:
        super().__init__()
        template = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        self._sizes = [p.buffer_size for p in template.planes]
        self._stride = template.planes[0].line_size
        period = 64
        # A few different wide rows, so the picture has vertical structure too.
        self._rows = [
            bytes(
                int(128 + 100 * math.sin(2 * math.pi * (x / period + k / 5))) & 0xFF
                for x in range(WIDTH + period)
            )
            for k in range(5)
        ]
        self._noise = [os.urandom(96 * 72) for _ in range(4)]
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.picture(self.sent)
        frame.pts = pts
        frame.time_base = time_base
        self.sent += 1
        return frame

    def picture(self, index: int) -> av.VideoFrame:
        """The ``index``-th picture (no timestamp)."""
        shift = (index * 4) % 64
        noise = self._noise[index % len(self._noise)]
        pad = b"\x00" * (self._stride - WIDTH)
        lines = []
        for y in range(HEIGHT):
            row = self._rows[(y // 48) % 5][shift : shift + WIDTH]
            if 200 <= y < 272:  # a 96x72 patch of fresh noise every frame
                offset = (y - 200) * 96
                row = row[:272] + noise[offset : offset + 96] + row[368:]
            lines.append(row + pad)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(b"".join(lines)[: self._sizes[0]])
        frame.planes[1].update(b"\x80" * self._sizes[1])
        frame.planes[2].update(b"\x80" * self._sizes[2])
        return frame


class PreEncodedVideoTrack(MediaStreamTrack):
    """MovingVideoTrack's pictures encoded once (VP8, ~1.8 Mbit/s), then sent in a loop.

    aiortc packetizes the encoded frames (``av.Packet``) without encoding, so the
    publisher costs little CPU and the benchmark measures the server, not the
    clients. Keyframes come every ``keyframe_interval`` frames (a PLI cannot make
    one sooner); the loop length is a multiple of it, so the stream stays decodable.
    """

    kind = "video"

    def __init__(self, frames: int = 120, bitrate: int = 1_800_000, keyframe_interval: int = 60):
        super().__init__()
        source = MovingVideoTrack()
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = WIDTH, HEIGHT
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = bitrate
        codec.framerate = fractions.Fraction(30, 1)
        codec.time_base = fractions.Fraction(1, 30)
        codec.gop_size = keyframe_interval
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        packets: list[av.Packet] = []
        for index in range(frames):
            picture = source.picture(index)
            picture.pts = index
            picture.time_base = codec.time_base
            packets += codec.encode(picture)
        packets += codec.encode(None)
        self._packets = packets
        self._start: float | None = None
        self.bytes = sum(p.size for p in packets)
        self.sent = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self.sent / 30 - time.monotonic()))
        packet = self._packets[self.sent % len(self._packets)]
        packet.pts = self.sent * 3000
        packet.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return packet


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames (Opus at 50 packets/s)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._rate = 8000
        self._start: float | None = None
        self._ts = 0
        samples = int(0.02 * self._rate)
        self._pcm = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / self._rate)))
            for i in range(samples)
        )
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(0.02 * self._rate)
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += samples
            await asyncio.sleep(self._start + self._ts / self._rate - time.time())
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(self._pcm)
        frame.pts = self._ts
        frame.sample_rate = self._rate
        frame.time_base = fractions.Fraction(1, self._rate)
        self.sent += 1
        return frame


class CountingBuffer:
    """Jitter-buffer replacement: counts packets and frames, never decodes.

    A packet whose sequence number was already received (a retransmission the
    receiver's NACK asked for, after it had arrived anyway) counts as a repeat.
    """

    def __init__(self) -> None:
        self.packets = 0
        self.frames = 0
        self.repeats = 0
        self.first_at: float | None = None
        self._seen: set[int] = set()

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        seq = packet.sequence_number
        if seq in self._seen:
            self.repeats += 1
            return False, None
        self._seen.add(seq)
        self._seen.discard((seq - 1024) % 65536)
        self.packets += 1
        if packet.marker:
            self.frames += 1
        if self.first_at is None:
            self.first_at = time.monotonic()
        return False, None


class PipeReader:
    """Receives pickled dicts from a multiprocessing pipe inside the event loop."""

    def __init__(self, conn: Connection, handler: Callable[[dict[str, Any]], None]) -> None:
        self.conn = conn
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable, handler)

    def _readable(self, handler: Callable[[dict[str, Any]], None]) -> None:
        while self.conn.poll():
            try:
                message = self.conn.recv()
            except EOFError:
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
                return
            handler(message)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.conn.fileno())


async def _client_main(server: Connection, control: Connection, role: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    pcs: list[RTCPeerConnection] = []
    counters: dict[str, CountingBuffer] = {}
    state: dict[str, Any] = {"connected_at": None, "first_decoded_at": None}
    video = PreEncodedVideoTrack() if role == "publisher" else None
    audio = ToneTrack() if role == "publisher" else None

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def decode_video(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                if state["first_decoded_at"] is None:
                    state["first_decoded_at"] = time.monotonic()
        except MediaStreamError:
            pass

    async def on_offer(sdp: str) -> None:
        if not pcs:
            pc = RTCPeerConnection(client_configuration())
            pcs.append(pc)

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                receiver = next(
                    t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                )
                if role == "late" and track.kind == "video":
                    spawn(decode_video(track))  # real decoding: first *decoded* frame
                    return
                buffer = CountingBuffer()
                counters[f"{track.kind}:{track.id}"] = buffer
                install_jitter_buffer(receiver, buffer)

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected" and state["connected_at"] is None:
                    state["connected_at"] = time.monotonic()

        pc = pcs[0]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        server.send({"type": "answer", "sdp": pc.localDescription.sdp})

    async def publish() -> None:
        pc = RTCPeerConnection(client_configuration())
        pcs.append(pc)
        assert audio is not None
        assert video is not None
        pc.addTransceiver(audio, direction="sendonly")
        pc.addTransceiver(video, direction="sendonly")
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        server.send({"type": "offer", "sdp": pc.localDescription.sdp})

    async def on_answer(sdp: str) -> None:
        await pcs[0].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def on_server(message: dict[str, Any]) -> None:
        if message["type"] == "offer":
            spawn(on_offer(message["sdp"]))
        elif message["type"] == "answer":
            spawn(on_answer(message["sdp"]))

    def on_control(message: dict[str, Any]) -> None:
        if message["cmd"] == "counts":
            video_counts = [c for k, c in counters.items() if k.startswith("video")]
            audio_counts = [c for k, c in counters.items() if k.startswith("audio")]
            first_video = min((c.first_at for c in video_counts if c.first_at), default=None)
            control.send(
                {
                    "time": time.monotonic(),
                    "video_frames": sum(c.frames for c in video_counts),
                    "video_packets": sum(c.packets for c in video_counts),
                    "audio_packets": sum(c.packets for c in audio_counts),
                    "repeats": sum(c.repeats for c in counters.values()),
                    "frames_sent": video.sent if video else 0,
                    "audio_sent": audio.sent if audio else 0,
                    "has_video": first_video is not None or state["first_decoded_at"] is not None,
                    "connected_at": state["connected_at"],
                    "first_decoded_at": state["first_decoded_at"],
                }
            )
        elif message["cmd"] == "stop":
            stop.set()

    server_reader = PipeReader(server, on_server)
    control_reader = PipeReader(control, on_control)
    server.send({"type": "join", "role": role})
    if role == "publisher":
        await publish()
    await stop.wait()
    server_reader.close()
    control_reader.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for pc in pcs:
        await pc.close()
    del loop
    control.send({"stopped": True})


def run_client(server: Connection, control: Connection, role: str) -> None:
    """Process entry point: role is "publisher", "subscriber" or "late"."""
    asyncio.run(_client_main(server, control, role))


def ask(conn: Connection, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send a command to a benchmark process over its pipe and return its reply."""
    conn.send(command)
    if not conn.poll(timeout):
        raise TimeoutError(f"no reply to {command}")
    reply: dict[str, Any] = conn.recv()
    return reply


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` until it holds (processes send no events); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
