"""One per-track Matroska/WebM file, written from encoded frames with PyAV (no codec opened).

VP8 streams are declared with ``add_mux_stream`` (the muxer needs only the
frame size, read from the first keyframe). Opus and H.264 streams need codec
parameters ``add_mux_stream`` cannot set (Opus: channel count and the
``OpusHead`` block browsers require; H.264: SPS/PPS as ``avcC``), so their
stream is copied with ``add_stream_from_template`` from a tiny in-memory
stream that libavformat parses for us: an Ogg Opus header, or the first H.264
keyframe as an Annex B elementary stream. Packets are never decoded.

Crash safety: the file is written as ``NAME.part`` with Matroska clusters
closed at least every second and the I/O buffer flushed after every packet,
so a killed process leaves everything up to the last closed cluster on disk
(readable, and remuxed into a finished file by recovery). ``close()`` writes
the cues and duration and renames the file to its final name.

Everything here blocks on disk I/O: it runs in the recording's writer thread.
"""

from __future__ import annotations

import fractions
import io
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import av
from av.container import InputContainer, OutputContainer
from av.stream import Stream

from .rtp_frames import EncodedFrame, annexb_nal_types, vp8_dimensions

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
#: The writer's log of opened files, read by recovery: one JSON object per line.
TRACK_LOG_NAME = "tracks.jsonl"
#: Muxer options: close a cluster every second and push each write to the OS at once.
CONTAINER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
MS = fractions.Fraction(1, 1000)
_H264_SPS = 7


def extension_for(codec_name: str) -> str:
    """WebM for VP8/Opus; Matroska for H.264 (WebM does not allow it)."""
    return "mkv" if codec_name.lower() == "h264" else "webm"


def container_format(extension: str) -> str:
    """The libavformat muxer for a file extension."""
    return "matroska" if extension == "mkv" else "webm"


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(payload: bytes, sequence: int, flags: int, granule: int) -> bytes:
    lacing = [255] * (len(payload) // 255) + [len(payload) % 255]
    header = b"OggS" + struct.pack("<BBqIII", 0, flags, granule, 1, sequence, 0)
    page = header + bytes([len(lacing)]) + bytes(lacing) + payload
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def opus_header_stream(channels: int = 2, sample_rate: int = 48000) -> bytes:
    """A minimal Ogg Opus stream (OpusHead, OpusTags, one silent frame) to copy a stream from."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, sample_rate, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 6) + b"yitang" + struct.pack("<I", 0)
    silence = b"\xf8\xff\xfe"  # a 20 ms CELT frame of silence
    return (
        _ogg_page(head, 0, 0x02, 0) + _ogg_page(tags, 1, 0x00, 0) + _ogg_page(silence, 2, 0x04, 960)
    )


def opus_frame_duration_ms(packet: bytes) -> float:
    """Duration of an Opus packet from its TOC byte (RFC 6716 section 3.1)."""
    if not packet:
        return 20.0
    config = packet[0] >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        size = (10.0, 20.0, 40.0, 60.0)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        size = (10.0, 20.0)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        size = (2.5, 5.0, 10.0, 20.0)[config % 4]
    code = packet[0] & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 1
    return size * max(count, 1)


class TrackFile:
    """A file being written for one track (create in the writer thread; not thread-safe)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        kind: str,
        codec_name: str,
        participant: str,
        track_id: str,
        start_offset: float,
        part: int = 1,
    ) -> None:
        self.directory = directory
        self.name = name
        self.kind = kind
        self.codec_name = codec_name.lower()
        self.participant = participant
        self.track_id = track_id
        #: Seconds from the recording's start to the first frame.
        self.start_offset = start_offset
        #: The recording's part this file belongs to (logged for recovery).
        self.part = part
        self.frames = 0
        self.width: int | None = None
        self.height: int | None = None
        self._container: OutputContainer | None = None
        self._stream: Stream | None = None
        self._last_pts = -1
        self._end_ms = 0.0
        self._closed = False
        self._logged_offset: float | None = None

    @property
    def part_path(self) -> Path:
        """Where the file is while it is written."""
        return self.directory / (self.name + PART_SUFFIX)

    @property
    def path(self) -> Path:
        """Where the finished file is."""
        return self.directory / self.name

    @property
    def duration(self) -> float:
        """Seconds of media written so far."""
        return self._end_ms / 1000.0

    def write(self, frame: EncodedFrame, time: float) -> bool:
        """Mux ``frame`` at ``time`` (seconds since the file's first frame); False if skipped.

        The first frame of an H.264 file must carry its SPS and PPS; earlier frames are
        skipped (the caller asks for another keyframe). Raises OSError on I/O errors.
        """
        if self._closed:
            return False
        if self._container is None:
            if self.codec_name == "h264" and _H264_SPS not in annexb_nal_types(frame.data):
                return False
            self._open(frame)
        assert self._container is not None
        assert self._stream is not None
        pts = max(round(time * 1000.0), 0)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.time_base = MS
        packet.pts = packet.dts = pts
        packet.is_keyframe = frame.keyframe
        if self.kind == "audio":
            duration = opus_frame_duration_ms(frame.data)
            packet.duration = round(duration)
        else:
            duration = 1000.0 / 30.0 if self._last_pts < 0 else min(pts - self._last_pts, 100)
        self._container.mux(packet)
        self._last_pts = pts
        self._end_ms = pts + duration
        self.frames += 1
        return True

    def close(self) -> None:
        """Write the trailer (cues, duration), rename ``.part`` to the final name (idempotent)."""
        if self._closed:
            return
        self._closed = True
        container, self._container = self._container, None
        if container is None:
            return
        container.close()
        os.replace(self.part_path, self.path)

    def abandon(self) -> None:
        """Close after a write error; keeps the ``.part`` file for recovery, raises nothing."""
        self._closed = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception as exc:  # the disk is already failing
                logger.debug("%s: close after error failed: %s", self.name, exc)

    @property
    def opened(self) -> bool:
        """Whether the file exists on disk (its first frame was written)."""
        return self._container is not None or (self._closed and self.path.exists())

    def _open(self, first: EncodedFrame) -> None:
        extension = extension_for(self.codec_name)
        container = av.open(
            str(self.part_path),
            "w",
            format=container_format(extension),
            options=dict(CONTAINER_OPTIONS),
        )
        try:
            self._stream = self._add_stream(container, first)
            self._stream.time_base = MS
            container.metadata["title"] = f"{self.participant} {self.kind}"
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        self._container = container
        self._log_open()

    def _add_stream(self, container: OutputContainer, first: EncodedFrame) -> Stream:
        if self.codec_name == "vp8":
            size = vp8_dimensions(first.data) or (640, 480)
            self.width, self.height = size
            return container.add_mux_stream("vp8", width=size[0], height=size[1])
        if self.codec_name == "opus":
            template = av.open(io.BytesIO(opus_header_stream()), "r", format="ogg")
            return self._copy_stream(container, template, "audio")
        if self.codec_name == "h264":
            template = av.open(io.BytesIO(first.data), "r", format="h264")
            stream = self._copy_stream(container, template, "video")
            return stream
        raise ValueError(f"cannot record codec {self.codec_name}")

    def _copy_stream(
        self, container: OutputContainer, template: InputContainer, kind: str
    ) -> Stream:
        try:
            source: Any = (
                template.streams.audio[0] if kind == "audio" else template.streams.video[0]
            )
            if kind == "video":
                self.width = int(source.codec_context.width) or None
                self.height = int(source.codec_context.height) or None
            stream: Stream = container.add_stream_from_template(source, opaque=True)
            return stream
        finally:
            template.close()

    def log_start_offset(self) -> None:
        """Append the refined start offset to the track log if it moved (recovery reads it)."""
        if self._container is None or self._logged_offset is None:
            return
        if abs(self.start_offset - self._logged_offset) < 0.005:
            return
        self._append_log({"name": self.name, "start_offset": round(self.start_offset, 4)})

    def _log_open(self) -> None:
        self._append_log(
            {
                "name": self.name,
                "participant": self.participant,
                "kind": self.kind,
                "codec": self.codec_name,
                "track_id": self.track_id,
                "start_offset": round(self.start_offset, 4),
                "width": self.width,
                "height": self.height,
                "part": self.part,
            }
        )

    def _append_log(self, entry: dict[str, Any]) -> None:
        self._logged_offset = self.start_offset
        with open(self.directory / TRACK_LOG_NAME, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            log.flush()
