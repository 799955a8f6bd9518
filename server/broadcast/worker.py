"""The broadcast worker: one OS process per broadcasting room, started by the room's owner.

``python -m server.broadcast.worker --fd N --dir DIR`` reads the room's packets
and programme from the inherited socket ``N`` (see :mod:`server.broadcast.wire`),
decodes the shown participant's and the host's video and every selected audio
track, composes one 25 fps frame per tick (:mod:`server.broadcast.composer`),
mixes the audio (:mod:`server.broadcast.mixer`), encodes H.264/AAC once and
writes HLS into ``DIR`` (``index.m3u8`` and MPEG-TS segments named after the
worker's start, so a restarted worker never reuses a cached segment's URI).

All of it runs in one thread of this process, paced by the monotonic clock:
when the process falls behind, video ticks are skipped (the audio never is),
so the broadcast stays live on a busy machine. It ends when its socket closes
(the owner went away) or on SIGTERM, closing the playlist with
``#EXT-X-ENDLIST``.
"""

from __future__ import annotations

import argparse
import contextlib
import fractions
import logging
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.rtp import RtpPacket

from server.recording.rtp_frames import FrameAssembler, frame_assembler

from . import wire
from .composer import ProgrammeComposer
from .mixer import RATE, AudioMixer
from .programme import Programme, TrackSlot

logger = logging.getLogger("server.broadcast.worker")

#: A video slot without a decoded frame asks for a keyframe at most this often (seconds).
KEYFRAME_INTERVAL = 1.0
#: A shown video frame older than this is replaced by the slate (the camera stopped).
STALE_VIDEO = 2.0
#: How far behind the clock the worker may fall before it skips video ticks.
MAX_LAG_TICKS = 3
#: Progress reports to the node, this often (seconds).
REPORT_INTERVAL = 1.0


class TrackDecoder:
    """One selected track: packets → frames → decoded video frame or audio samples."""

    def __init__(self, track: TrackSlot) -> None:
        self.track = track
        self.assembler: FrameAssembler = frame_assembler(track.kind, track.codec)
        # Typed as Any: PyAV's stubs type create() as the base class, without decode().
        codec: Any = av.CodecContext.create(track.codec.lower(), "r")
        if track.kind == "audio":
            codec.sample_rate = RATE
        self.codec = codec
        self.resampler = (
            av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
            if track.kind == "audio"
            else None
        )
        self.latest: av.VideoFrame | None = None
        self.latest_at = 0.0
        self.broken = False
        self.last_keyframe_request = 0.0

    def push(self, packet: RtpPacket, now: float, mixer: AudioMixer) -> None:
        """Depacketize and decode; video keeps its newest frame, audio goes to the mixer."""
        for encoded in self.assembler.push(packet, now):
            if self.broken and not encoded.keyframe:
                continue
            try:
                decoded = self.codec.decode(av.Packet(encoded.data))
            except av.error.FFmpegError:
                # A corrupt frame: wait for the next keyframe (and ask for one).
                self.broken = True
                continue
            self.broken = False
            for frame in decoded:
                if isinstance(frame, av.VideoFrame):
                    self.latest = frame
                    self.latest_at = now
                elif self.resampler is not None:
                    for out in self.resampler.resample(frame):
                        mixer.push(self.track.slot, out.to_ndarray().astype(np.float32))

    def needs_keyframe(self, now: float) -> bool:
        """Whether to ask the node for a keyframe now (rate-limited)."""
        if self.track.kind != "video":
            return False
        starving = self.latest is None or self.broken or self.assembler.needs_keyframe
        if starving and now - self.last_keyframe_request >= KEYFRAME_INTERVAL:
            self.last_keyframe_request = now
            return True
        return False

    def frame(self, now: float) -> av.VideoFrame | None:
        """The newest decoded frame, unless the camera has stopped."""
        if self.latest is None or now - self.latest_at > STALE_VIDEO:
            return None
        return self.latest


class HlsOutput:
    """The H.264/AAC encoder and the HLS muxer writing into one directory."""

    def __init__(
        self,
        directory: Path,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        segment_seconds: int,
        list_size: int,
    ) -> None:
        epoch = format(int(time.time() * 1000), "x")
        self.fps = fps
        self.container = av.open(
            str(directory / "index.m3u8"),
            "w",
            format="hls",
            options={
                "hls_time": str(segment_seconds),
                "hls_list_size": str(list_size),
                # Old segments go (after the list no longer names them); a segment
                # appears under its name only once complete; each starts with a keyframe.
                "hls_flags": "delete_segments+temp_file+independent_segments",
                "hls_segment_filename": str(directory / f"{epoch}-%05d.ts"),
            },
        )
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width = width
        self.video.height = height
        self.video.pix_fmt = "yuv420p"
        self.video.bit_rate = bitrate
        # A keyframe every segment, no scene-cut keyframes (segments of equal length),
        # no B-frames or look-ahead (zerolatency): each tick's frame leaves at once.
        self.video.codec_context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "g": str(fps * segment_seconds),
            "keyint_min": str(fps * segment_seconds),
            "sc_threshold": "0",
        }
        self.audio = self.container.add_stream("aac", rate=RATE, layout="stereo")
        self.audio.bit_rate = 96000
        self.fifo = av.AudioFifo()
        self.audio_pts = 0
        self.frames = 0

    def write_video(self, frame: av.VideoFrame, tick: int) -> None:
        """Encode the frame of tick `tick` (ticks count from the start, at `fps`)."""
        frame.pts = tick
        frame.time_base = fractions.Fraction(1, self.fps)
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Encode stereo float samples (shape (2, n)), in AAC's 1024-sample frames."""
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self.audio_pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.audio_pts += samples.shape[1]
        self.fifo.write(frame)
        while self.fifo.samples >= 1024:
            chunk = self.fifo.read(1024)
            if chunk is not None:
                self.container.mux(self.audio.encode(chunk))

    def close(self) -> None:
        """Flush the encoders and close the playlist (with ``#EXT-X-ENDLIST``)."""
        self.container.mux(self.video.encode(None))
        self.container.mux(self.audio.encode(None))
        self.container.close()


class BroadcastWorker:
    """The worker's loop (see the module docstring)."""

    def __init__(self, sock: socket.socket, output: HlsOutput, composer: ProgrammeComposer) -> None:
        self.sock = sock
        self.output = output
        self.composer = composer
        self.mixer = AudioMixer()
        self.programme: Programme | None = None
        self.decoders: dict[int, TrackDecoder] = {}
        self.stopping = False
        self.parent = os.getppid()

    def run(self) -> None:
        """Until the socket closes or SIGTERM: receive, decode, and emit one tick at a time."""
        fps = self.output.fps
        samples_per_tick = RATE // fps
        start = time.monotonic()
        tick = 0
        next_report = start + REPORT_INTERVAL
        while not self.stopping:
            now = time.monotonic()
            due = start + tick / fps
            if now < due:
                if not self._receive(due - now):
                    return
                continue
            behind = int((now - due) * fps)
            if behind > MAX_LAG_TICKS:
                # Too slow for the clock: skip the video of the missed ticks, keep the sound.
                for _ in range(behind):
                    self.output.write_audio(self._mix(samples_per_tick))
                tick += behind
            self._emit(tick, now, samples_per_tick)
            tick += 1
            if now >= next_report:
                next_report = now + REPORT_INTERVAL
                self._send(
                    wire.pack_json(
                        wire.REPORT,
                        {
                            "frames": self.output.frames,
                            "cpu": time.process_time(),
                        },
                    )
                )
                if os.getppid() != self.parent:
                    return  # the owner died without closing the socket

    def _mix(self, count: int) -> np.ndarray:
        paused = self.programme is None or self.programme.paused
        return self.mixer.mix(count, silent=paused)

    def _emit(self, tick: int, now: float, samples_per_tick: int) -> None:
        programme = self.programme or Programme(room="", title="")
        main = self._frame("main", now)
        corner = self._frame("corner", now)
        self.output.write_video(self.composer.compose(programme, main, corner), tick)
        self.output.write_audio(self._mix(samples_per_tick))

    def _frame(self, use: str, now: float) -> av.VideoFrame | None:
        if self.programme is None:
            return None
        track = self.programme.slot(use)  # type: ignore[arg-type]
        decoder = self.decoders.get(track.slot) if track else None
        return decoder.frame(now) if decoder else None

    def _receive(self, timeout: float) -> bool:
        """Take what arrives within `timeout`; False once the node closed the socket."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return True
        for _ in range(1000):
            try:
                datagram = self.sock.recv(wire.MAX_DATAGRAM)
            except BlockingIOError:
                break
            except ConnectionError:
                return False
            if not datagram:
                return False
            self._handle(datagram)
        now = time.monotonic()
        for slot, decoder in self.decoders.items():
            if decoder.needs_keyframe(now):
                self._send(wire.pack_keyframe(slot))
        return True

    def _handle(self, datagram: bytes) -> None:
        kind = datagram[:1]
        if kind == wire.PACKET:
            slot, packet = wire.unpack_packet(datagram)
            decoder = self.decoders.get(slot)
            if decoder is not None:
                decoder.push(packet, time.monotonic(), self.mixer)
        elif kind == wire.STATE:
            self._set_programme(Programme.from_json(wire.unpack_json(datagram)))

    def _set_programme(self, programme: Programme) -> None:
        self.programme = programme
        wanted = {t.slot: t for t in programme.tracks}
        for slot in list(self.decoders):
            if wanted.get(slot) != self.decoders[slot].track:
                del self.decoders[slot]
        for slot, track in wanted.items():
            if slot not in self.decoders:
                try:
                    self.decoders[slot] = TrackDecoder(track)
                except (ValueError, av.error.FFmpegError):
                    logger.warning("no decoder for %s track %s", track.kind, track.codec)
        self.mixer.keep({t.slot for t in programme.tracks if t.kind == "audio"})

    def _send(self, datagram: bytes) -> None:
        # The node is busy or gone: a report or a keyframe request may be lost.
        with contextlib.suppress(OSError):
            self.sock.send(datagram)


def main(argv: list[str] | None = None) -> int:
    """Run one broadcast worker (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m server.broadcast.worker")
    parser.add_argument("--fd", type=int, required=True, help="the socket inherited from the node")
    parser.add_argument("--dir", type=Path, required=True, help="where the HLS files go")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--segment-seconds", type=int, default=2)
    parser.add_argument("--list-size", type=int, default=6)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="broadcast worker %(levelname)s %(message)s")
    av.logging.set_level(av.logging.ERROR)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wire.SOCKET_BUFFER)
    args.dir.mkdir(parents=True, exist_ok=True)
    output = HlsOutput(
        args.dir,
        width=args.width,
        height=args.height,
        fps=args.fps,
        bitrate=args.bitrate,
        segment_seconds=args.segment_seconds,
        list_size=args.list_size,
    )
    worker = BroadcastWorker(sock, output, ProgrammeComposer(args.width, args.height))

    def stop(signum: int, frame: object) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        output.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
