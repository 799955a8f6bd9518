"""Pre-encoded media for load-test publishers: encoded once, sent in a loop.

A load test measures the server; publishers that encode live would measure
their own CPU instead (one 640x480 VP8 encoder takes a good part of a core).
So each worker process encodes a short clip once — a scrolling pattern with a
patch of fresh noise, which keeps the encoder near its target bitrate like a
busy camera — and its publishers send the encoded packets without encoding:
through `ClipSender` (server/loadtest/clip_sender.py), or, where the compiled
fan-out is not built, through aiortc's `RTCRtpSender` on a `ClipTrack` (it
accepts `av.Packet`).

A video clip is one keyframe followed by delta frames, as long as its
keyframe interval: it loops seamlessly, with a keyframe each time round.
:class:`~server.loadtest.clip_sender.ClipSender` answers a keyframe request
(PLI, FIR) as a browser's encoder does, with a keyframe at the next frame: it
starts the clip again from its first. So the interval is only how often a
keyframe comes unasked. Browsers send one unasked rarely (libwebrtc's VP8: every
3 000 frames); the load test's default is every 10 s (`--keyframe-interval`),
and `--keyframe-interval 1` is the every-second load of the README's earlier
runs, when the clip could not answer a request and had to have one often. Each
keyframe is a burst of packets that the SFU sends to every receiver before the
packets behind it: how often they come shapes the tail of its delay.
:class:`ClipTrack` (aiortc's own sender, without the compiled fan-out) cannot
answer a request: there a new subscriber waits for the next time round.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import time
from dataclasses import dataclass
from typing import Any, cast

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.codeccontext import VideoCodecContext

#: Encoders by the `--codec` name; both are in PyAV's wheels.
VIDEO_ENCODERS = {"vp8": "libvpx", "h264": "libx264"}
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms at 48 kHz: one Opus packet


#: Seconds between the keyframes of a load publisher's video clip, by default.
DEFAULT_KEYFRAME_INTERVAL = 10.0


@dataclass(frozen=True)
class Clip:
    """Encoded packets of one medium, played at `interval` seconds per packet (video:
    one frame each; the first is the clip's only keyframe)."""

    kind: str
    packets: tuple[bytes, ...]
    interval: float
    clock_rate: int
    ticks_per_packet: int


def encode_video(
    codec: str, width: int, height: int, fps: int, bitrate: int, keyframe_interval: float = 1.0
) -> Clip:
    """``keyframe_interval`` seconds of video (at least a frame): a keyframe, then delta
    frames (``bitrate`` in bit/s)."""
    frames = max(1, round(keyframe_interval * fps))
    context = cast(VideoCodecContext, av.CodecContext.create(VIDEO_ENCODERS[codec], "w"))
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = fractions.Fraction(1, fps)
    context.framerate = fractions.Fraction(fps, 1)
    context.bit_rate = bitrate
    # No keyframe of the encoder's choosing within the clip (its GOP is the clip).
    context.gop_size = frames
    if codec == "vp8":
        context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:  # Constrained Baseline (what aiortc and browsers negotiate), no B-frames.
        context.profile = "baseline"
        context.options = {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1"}
    pattern = _Pattern(width, height)
    packets: list[bytes] = []
    for index in range(frames):
        frame = pattern.frame(index)
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if index == 0 else 0
        packets += [bytes(p) for p in context.encode(frame)]
    packets += [bytes(p) for p in context.encode(None)]
    return Clip("video", tuple(packets), 1 / fps, 90_000, 90_000 // fps)


def encode_audio() -> Clip:
    """One second of a 440 Hz tone as Opus packets of 20 ms."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate = AUDIO_RATE
    context.layout = "mono"
    context.format = "s16"
    context.bit_rate = 32_000
    packets: list[bytes] = []
    for index in range(AUDIO_RATE // AUDIO_FRAME):
        samples = b"".join(
            int(
                6000 * math.sin(2 * math.pi * 440 * (index * AUDIO_FRAME + i) / AUDIO_RATE)
            ).to_bytes(2, "little", signed=True)
            for i in range(AUDIO_FRAME)
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME)
        frame.planes[0].update(samples)
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        packets += [bytes(p) for p in context.encode(frame)]
    return Clip("audio", tuple(packets), AUDIO_FRAME / AUDIO_RATE, AUDIO_RATE, AUDIO_FRAME)


class ClipTrack(MediaStreamTrack):
    """Plays a clip in a loop, in real time, as encoded packets (never re-encoded)."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.sent = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, clip.clock_rate)

    async def recv(self) -> av.Packet[Any]:  # aiortc packetizes a Packet without encoding
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            # Paced against the start, not the last packet: late wake-ups do not add up.
            due = self._start + self.sent * self.clip.interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        packet = av.Packet(self.clip.packets[self.sent % len(self.clip.packets)])
        packet.pts = self.sent * self.clip.ticks_per_packet
        packet.time_base = self._time_base
        self.sent += 1
        return packet


class _Pattern:
    """A scrolling sine pattern with a noisy patch: costs an encoder about what a camera does."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        period = 64
        self.rows = [
            bytes(
                int(128 + 100 * math.sin(2 * math.pi * (x / period + k / 5))) & 0xFF
                for x in range(width + period)
            )
            for k in range(5)
        ]
        self.patch = (max(16, width // 7), max(16, height // 7))
        self.noise = [os.urandom(self.patch[0] * self.patch[1]) for _ in range(4)]

    def frame(self, index: int) -> av.VideoFrame:
        width, height = self.width, self.height
        frame = av.VideoFrame(width, height, "yuv420p")
        stride = frame.planes[0].line_size
        shift = (index * 4) % 64
        noise = self.noise[index % len(self.noise)]
        patch_w, patch_h = self.patch
        top, left = (height - patch_h) // 2, (width - patch_w) // 2
        lines = []
        for y in range(height):
            row = self.rows[(y // 48) % 5][shift : shift + width]
            if top <= y < top + patch_h:
                start = (y - top) * patch_w
                row = row[:left] + noise[start : start + patch_w] + row[left + patch_w :]
            lines.append(row + b"\x00" * (stride - width))
        frame.planes[0].update(b"".join(lines))
        for plane in frame.planes[1:]:
            plane.update(b"\x80" * plane.buffer_size)
        return frame
