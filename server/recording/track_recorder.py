"""The recorder of one published track: a PacketSink on its forwarder, writing one file.

Two sides, two threads:

* the event loop calls :meth:`TrackRecorder.on_packet` for every packet (from
  the forwarder, in the publisher's receive path). It only appends the packet
  and its arrival time to a list: no parsing, no I/O, never blocking. If the
  writer falls behind (a stalled disk) the list is capped: the backlog is
  dropped, and the file resumes at the next keyframe. Nothing it does can
  raise into the media layer: should it fail anyway, the recorder stops
  taking packets at once and records why in :attr:`TrackRecorder.sink_error`;
  the recording's next pass then fails the recording and detaches it.
* the recording's writer thread takes those batches (:meth:`take`, called on
  the loop), rebuilds frames, maps RTP timestamps to the recording's clock
  and muxes them (:meth:`write`, :meth:`finish`).

Timestamps: a file's time starts at its first frame, whose offset from the
recording's start is its arrival time (so a participant who joins late gets a
file starting late). Within the file, time follows the RTP timestamps, so
gaps (muted audio, DTX, a paused camera) stay gaps. If the RTP clock jumps
(a new SSRC after the publisher reconnected, or timestamps that drift more
than ``MAX_DRIFT`` seconds from arrival times) the mapping is re-anchored on
the arrival time. A participant who leaves and rejoins publishes a new track:
a new file, with its own start offset.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from aiortc.rtp import RtpPacket

from server.media import TrackInfo

from .models import FileEntry
from .rtp_frames import EncodedFrame, FrameAssembler, VideoFrameAssembler, frame_assembler
from .track_file import TrackFile, extension_for

logger = logging.getLogger(__name__)

#: Packets buffered between two writer passes before the backlog is dropped (~10 s of video).
MAX_PENDING_PACKETS = 4000
#: RTP time further than this from arrival time means the sender's clock jumped.
MAX_DRIFT = 5.0


#: ``<track>.p<part>.<ext>``: a resumed part's files (part 1 has no marker).
_PART_MARKER = re.compile(r"^(?P<track>.+)\.p(?P<part>[0-9]+)$")


def file_name_for(track_id: str, codec_name: str, part: int = 1) -> str:
    """The file name of a track: its id made safe for a file system, plus the extension.

    From part 2 on, ``.p<part>`` comes before the extension: the new node's media room
    numbers its tracks from 1 again, and its files share the folder with the earlier parts'.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", track_id).strip(".") or "track"
    if not safe[0].isalnum():
        safe = "t" + safe
    marker = f".p{part}" if part > 1 else ""
    return f"{safe[:100]}{marker}.{extension_for(codec_name)}"


def parse_file_name(name: str) -> tuple[str, int]:
    """The (safe) track id and the part of a file named by :func:`file_name_for`."""
    stem = name.rsplit(".", 1)[0]
    marked = _PART_MARKER.fullmatch(stem)
    if marked is None:
        return stem, 1
    return marked["track"], int(marked["part"])


class TimestampMapper:
    """RTP timestamps of one track to seconds since the file's first frame, and where that
    first frame sits on the recording's clock.

    Within the file, time follows the RTP clock. The file's start offset is estimated
    from arrival times as the smallest ``arrival - file time`` seen so far: network and
    scheduling delays only ever make packets late, so the minimum is the best estimate
    (a first packet that arrived late in a burst does not shift the whole file).
    """

    def __init__(self, clock_rate: int, max_drift: float = MAX_DRIFT) -> None:
        self.clock_rate = clock_rate
        self.max_drift = max_drift
        #: Seconds from the recording's start to the file's time 0 (None before the first frame).
        self.offset: float | None = None
        self._ssrc: int | None = None
        self._last_ext = 0
        self._anchor_ext = 0
        self._anchor_time = 0.0
        self._last_time: float | None = None
        self.reanchors = 0

    def map(self, timestamp: int, ssrc: int, arrival: float) -> float:
        """Seconds since the file's first frame for a frame with this RTP timestamp.

        ``arrival`` is the frame's arrival in seconds since the recording started.
        """
        if self._ssrc != ssrc or self._last_time is None or self.offset is None:
            return self._anchor(timestamp, ssrc, arrival)
        ext = self._unwrap(timestamp)
        mapped = self._anchor_time + (ext - self._anchor_ext) / self.clock_rate
        if abs(mapped + self.offset - arrival) > self.max_drift:
            return self._anchor(timestamp, ssrc, arrival)
        self._last_ext = ext
        self._last_time = max(mapped, self._last_time)
        self.offset = min(self.offset, arrival - self._last_time)
        return self._last_time

    def _unwrap(self, timestamp: int) -> int:
        candidate = (self._last_ext & ~0xFFFFFFFF) | timestamp
        if candidate - self._last_ext > 0x80000000:
            candidate -= 0x100000000
        elif self._last_ext - candidate > 0x80000000:
            candidate += 0x100000000
        return candidate

    def _anchor(self, timestamp: int, ssrc: int, arrival: float) -> float:
        if self._last_time is None or self.offset is None:
            self.offset = arrival
            moment = 0.0
        else:
            # The sender's clock jumped (new SSRC, restarted timestamps): continue from
            # the arrival time, never before what was already written.
            self.reanchors += 1
            moment = max(arrival - self.offset, self._last_time + 0.001)
        self._ssrc = ssrc
        self._last_ext = self._anchor_ext = timestamp
        self._anchor_time = moment
        self._last_time = moment
        return moment


class TrackRecorder:
    """Records one track into one file (see the module docstring for the threading)."""

    def __init__(
        self,
        track: TrackInfo,
        *,
        clock_rate: int,
        directory: Path,
        clock_start: float,
        part: int = 1,
    ) -> None:
        self.track = track
        self.codec_name = track.codec.split("/")[-1].lower()
        self.clock_start = clock_start
        self._pending: list[tuple[RtpPacket, float]] = []
        self._assembler: FrameAssembler = frame_assembler(track.kind, self.codec_name)
        self._mapper = TimestampMapper(clock_rate)
        self.part = part
        self.file = TrackFile(
            directory,
            file_name_for(track.track_id, self.codec_name, part),
            kind=track.kind,
            codec_name=self.codec_name,
            participant=track.participant_id,
            track_id=track.track_id,
            start_offset=0.0,
            part=part,
        )
        #: The forwarder ended (the participant left or stopped this track).
        self.ended = False
        #: No more packets are taken (stopped, or failed).
        self.detached = False
        self.finished = False
        self.error: str | None = None
        #: Why ``on_packet`` failed (then it takes nothing more; the recording fails).
        self.sink_error: str | None = None
        self.overflows = 0
        self.packets = 0
        self._skipped_unusable = False

    def __repr__(self) -> str:
        return f"TrackRecorder({self.track.track_id} -> {self.file.name})"

    # --- PacketSink (event loop) --------------------------------------------------------

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        """Queue a packet for the writer (never blocks, never raises into the forwarder)."""
        if self.detached:
            return
        try:
            pending = self._pending
            pending.append((packet, time.monotonic()))
            if len(pending) > MAX_PENDING_PACKETS:
                # The writer is stuck: drop the backlog; the assembler sees the hole.
                self._pending = []
                self.overflows += 1
        except Exception as exc:
            # Stop taking packets now; the recording's next pass fails it and detaches us.
            self.detached = True
            self.sink_error = f"{type(exc).__name__}: {exc}"
            logger.exception("%r: packet not taken; the recording fails", self)

    def on_forwarder_ended(self) -> None:
        """The track ended: the writer closes the file on its next pass."""
        self.ended = True

    # --- event loop ------------------------------------------------------------------------

    def take(self) -> list[tuple[RtpPacket, float]]:
        """The packets received since the last call."""
        batch, self._pending = self._pending, []
        return batch

    @property
    def wants_keyframe(self) -> bool:
        """Whether the file waits for a keyframe (start, or after a loss)."""
        if self.detached or self.finished or self.track.kind != "video":
            return False
        return self._assembler.needs_keyframe or self._skipped_unusable

    # --- writer thread ---------------------------------------------------------------------

    def write(self, batch: list[tuple[RtpPacket, float]]) -> None:
        """Rebuild frames from ``batch`` and mux them. Raises OSError on I/O errors."""
        if self.finished:
            return
        self.packets += len(batch)
        for packet, arrival in batch:
            for frame in self._assembler.push(packet, arrival):
                self._write_frame(frame)
        self.file.log_start_offset()

    def finish(self) -> None:
        """Write what is complete and close the file (renamed from ``.part``). Raises OSError."""
        if self.finished:
            return
        for frame in self._assembler.flush():
            self._write_frame(frame)
        self.finished = True
        self.file.close()

    def abandon(self, error: str) -> None:
        """Stop after an error; the ``.part`` file stays for recovery."""
        self.error = self.error or error
        self.finished = True
        self.file.abandon()

    def entry(self) -> FileEntry:
        """This track's manifest entry (sha256 and size are filled in by the caller)."""
        return FileEntry(
            name=self.file.name,
            participant=self.track.participant_id,
            kind="video" if self.track.kind == "video" else "audio",
            codec=self.codec_name,
            track_id=self.track.track_id,
            start_offset=round(self.file.start_offset, 4),
            duration=round(self.file.duration, 4),
            frames=self.file.frames,
            gaps=self._assembler.gaps + self._mapper.reanchors,
            width=self.file.width,
            height=self.file.height,
            error=self.error,
            part=self.part,
        )

    def _write_frame(self, frame: EncodedFrame) -> None:
        if not self.file.opened:
            # Until the file exists (H.264 waits for SPS/PPS), every frame may be its first.
            self._mapper = TimestampMapper(self._mapper.clock_rate)
        moment = self._mapper.map(frame.timestamp, frame.ssrc, frame.arrival - self.clock_start)
        if self._mapper.offset is not None:
            self.file.start_offset = self._mapper.offset
        written = self.file.write(frame, moment)
        self._skipped_unusable = not written and isinstance(self._assembler, VideoFrameAssembler)
