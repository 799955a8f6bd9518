"""RTP packets to encoded frames (VP8, H.264, Opus), without decoding anything.

The packets come straight from the publisher's receiver: in arrival order,
possibly reordered, with NACK retransmissions arriving late and some packets
lost for good. Video frames are rebuilt from consecutive sequence numbers up
to the marker bit; a frame with a hole is never emitted. After a loss the
assembler drops frames until the next keyframe (a decoder could not use them)
and says so through :attr:`VideoFrameAssembler.needs_keyframe`, so the
recorder can ask the publisher for one. Opus needs no assembly (one packet is
one frame); late or duplicate packets are dropped.

Payload formats: VP8 (RFC 7741), H.264 packetization-mode 1 (RFC 6184:
single NAL units, STAP-A, FU-A) producing Annex B, Opus (RFC 7587).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from server.media.keyframes import h264_is_keyframe_start, vp8_is_keyframe_start

logger = logging.getLogger(__name__)

#: A missing packet is waited for this long (arrival time of later packets) before it is lost.
REORDER_WAIT = 0.5
#: Hard bound on buffered packets of one video track (about 2-5 s of video).
MAX_BUFFERED_PACKETS = 1500

_H264_IDR = 5
_H264_STAP_A = 24
_H264_FU_A = 28


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame as the muxer takes it."""

    data: bytes
    #: RTP timestamp of the frame (32-bit, as sent).
    timestamp: int
    ssrc: int
    keyframe: bool
    #: Arrival time (monotonic seconds) of the frame's first packet.
    arrival: float


def _seq_unwrap(seq: int, reference: int) -> int:
    """Extend a 16-bit sequence number to the value nearest ``reference``."""
    candidate = (reference & ~0xFFFF) | seq
    if candidate - reference > 0x8000:
        candidate -= 0x10000
    elif reference - candidate > 0x8000:
        candidate += 0x10000
    return candidate


def vp8_frame_is_keyframe(frame: bytes) -> bool:
    """True if a depayloaded VP8 frame is a keyframe (RFC 6386 frame tag, P bit clear)."""
    return len(frame) >= 10 and not frame[0] & 0x01


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a VP8 keyframe's header, or None if it is not a keyframe."""
    if not vp8_frame_is_keyframe(frame) or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = (frame[6] | frame[7] << 8) & 0x3FFF
    height = (frame[8] | frame[9] << 8) & 0x3FFF
    return (width, height) if width and height else None


def annexb_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    types = []
    index = data.find(b"\x00\x00\x01")
    while index != -1 and index + 3 < len(data):
        types.append(data[index + 3] & 0x1F)
        index = data.find(b"\x00\x00\x01", index + 3)
    return types


def h264_frame_is_keyframe(frame: bytes) -> bool:
    """True if an Annex B access unit holds an IDR slice."""
    return _H264_IDR in annexb_nal_types(frame)


class OpusFrameAssembler:
    """Opus: one RTP packet is one frame; drop duplicates and packets older than the last one."""

    def __init__(self) -> None:
        self._last_seq: int | None = None
        self.dropped = 0

    needs_keyframe = False
    gaps = 0

    def push(self, packet: RtpPacket, arrival: float) -> list[EncodedFrame]:
        """Take one packet; return the frames it completes (zero or one)."""
        if not packet.payload:
            return []
        if self._last_seq is None:
            seq = packet.sequence_number
        else:
            seq = _seq_unwrap(packet.sequence_number, self._last_seq)
            if seq <= self._last_seq:
                self.dropped += 1
                return []
        self._last_seq = seq
        return [EncodedFrame(packet.payload, packet.timestamp, packet.ssrc, True, arrival)]

    def flush(self) -> list[EncodedFrame]:
        """Nothing is ever held back."""
        return []


@dataclass
class _Buffered:
    packet: RtpPacket
    arrival: float


class VideoFrameAssembler:
    """VP8 or H.264: rebuild frames from packets; emit only complete frames, in order."""

    def __init__(self, codec_name: str) -> None:
        name = codec_name.lower()
        if name not in ("vp8", "h264"):
            raise ValueError(f"no video depacketizer for {codec_name}")
        self._codec = name
        self._starts_keyframe = vp8_is_keyframe_start if name == "vp8" else h264_is_keyframe_start
        self._buffer: dict[int, _Buffered] = {}
        #: Extended sequence number of the next packet to consume (None: not started).
        self._next: int | None = None
        self._highest: int | None = None
        self._waiting_since: float | None = None
        #: True until a keyframe starts the stream, and again after any loss.
        self.needs_keyframe = True
        #: Losses that forced a wait for the next keyframe.
        self.gaps = 0
        self.frames_dropped = 0

    def push(self, packet: RtpPacket, arrival: float) -> list[EncodedFrame]:
        """Take one packet; return the frames that are now complete, in order."""
        reference = self._highest if self._highest is not None else packet.sequence_number
        seq = _seq_unwrap(packet.sequence_number, reference)
        if self._next is not None and seq < self._next:
            return []  # late duplicate or retransmission of something already consumed
        if seq in self._buffer:
            return []
        self._buffer[seq] = _Buffered(packet, arrival)
        if self._highest is None or seq > self._highest:
            self._highest = seq
        if self._next is None:
            self._start_at_keyframe()
        frames = self._consume(arrival)
        if len(self._buffer) > MAX_BUFFERED_PACKETS:
            self._declare_loss()
            frames += self._consume(arrival)
        return frames

    def flush(self) -> list[EncodedFrame]:
        """The track ended: incomplete frames are dropped, complete ones returned."""
        frames = self._consume(float("inf"))
        self._buffer.clear()
        return frames

    # --- internals ------------------------------------------------------------------------

    def _start_at_keyframe(self) -> None:
        starts = [s for s, b in self._buffer.items() if self._is_start(b.packet)]
        if not starts:
            # Nothing usable yet; keep only a bounded tail while waiting.
            if len(self._buffer) > 64:
                for seq in sorted(self._buffer)[:-64]:
                    del self._buffer[seq]
            return
        self._next = min(starts)
        for seq in [s for s in self._buffer if s < self._next]:
            del self._buffer[seq]

    def _is_start(self, packet: RtpPacket) -> bool:
        return bool(packet.payload) and self._starts_keyframe(packet.payload)

    def _consume(self, now: float) -> list[EncodedFrame]:
        frames: list[EncodedFrame] = []
        while self._next is not None:
            collected = self._collect_frame()
            if collected is None:
                if not self._loss_is_certain(now):
                    break
                self._declare_loss()
                continue
            end_seq, packets = collected
            for seq in range(self._next, end_seq + 1):
                self._buffer.pop(seq, None)
            self._next = end_seq + 1
            self._waiting_since = None
            frame = self._build(packets)
            if frame is not None:
                frames.append(frame)
        return frames

    def _collect_frame(self) -> tuple[int, list[_Buffered]] | None:
        """Packets of the frame starting at ``_next`` if all of them are here."""
        assert self._next is not None
        first = self._buffer.get(self._next)
        if first is None:
            return None
        timestamp = first.packet.timestamp
        packets = [first]
        seq = self._next
        while True:
            if packets[-1].packet.marker:
                return seq, packets
            following = self._buffer.get(seq + 1)
            if following is None:
                return None
            if following.packet.timestamp != timestamp:
                # A new frame began without a marker on the previous one: that frame is done.
                return seq, packets
            seq += 1
            packets.append(following)

    def _loss_is_certain(self, now: float) -> bool:
        """Whether the packet we wait for will not come (later packets waited long enough)."""
        if self._next is None or self._highest is None or self._highest < self._next:
            return False
        if self._waiting_since is None:
            waiting = [b.arrival for s, b in self._buffer.items() if s > self._next]
            self._waiting_since = min(waiting) if waiting else None
        return self._waiting_since is not None and now - self._waiting_since > REORDER_WAIT

    def _declare_loss(self) -> None:
        """Skip the hole: wait for a keyframe that starts cleanly after it."""
        if not self.needs_keyframe:
            self.gaps += 1
        self.needs_keyframe = True
        self._waiting_since = None
        later = sorted(s for s in self._buffer if self._next is None or s > self._next)
        if self._next is not None:
            self._buffer.pop(self._next, None)
        self._next = None
        if later:
            for seq in [s for s in self._buffer if s < later[0]]:
                del self._buffer[seq]
            self._start_at_keyframe()

    def _build(self, packets: list[_Buffered]) -> EncodedFrame | None:
        first = packets[0].packet
        payloads = [b.packet.payload for b in packets if b.packet.payload]
        if not payloads:
            return None  # padding only
        try:
            if self._codec == "vp8":
                data = b"".join(vp8_depayload(p) for p in payloads)
                keyframe = self._is_start(first) and vp8_frame_is_keyframe(data)
            else:
                data = b"".join(h264_depayload(p) for p in payloads)
                keyframe = h264_frame_is_keyframe(data)
        except ValueError as exc:
            logger.debug("unparseable %s frame dropped: %s", self._codec, exc)
            self._drop_until_keyframe()
            return None
        if self.needs_keyframe and not keyframe:
            self.frames_dropped += 1
            return None
        self.needs_keyframe = False
        return EncodedFrame(data, first.timestamp, first.ssrc, keyframe, packets[0].arrival)

    def _drop_until_keyframe(self) -> None:
        if not self.needs_keyframe:
            self.gaps += 1
        self.needs_keyframe = True
        self.frames_dropped += 1


FrameAssembler = VideoFrameAssembler | OpusFrameAssembler


def frame_assembler(kind: str, codec_name: str) -> FrameAssembler:
    """The assembler for a track's codec."""
    if kind == "audio":
        if codec_name.lower() != "opus":
            raise ValueError(f"no audio depacketizer for {codec_name}")
        return OpusFrameAssembler()
    return VideoFrameAssembler(codec_name)
