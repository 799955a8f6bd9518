"""Per-subscriber rewriting of forwarded RTP headers (SSRC, PT, sequence, timestamp).

Each subscriber sees one continuous RTP stream from its own sender, whatever
the forwarder skipped (packets dropped while waiting for a keyframe, paused
periods, a publisher that restarted with a new SSRC). Sequence numbers and
timestamps are mapped by offset, so late retransmissions keep their order.

Incoming sequence numbers are compared as *extended* (unwrapped) numbers,
relative to the newest packet forwarded, so the comparison holds however long
the stream runs (the 16-bit numbers wrap every 65536 packets: 22 minutes of
Opus, a few minutes of video).
"""

from __future__ import annotations

import logging
import random
import time

from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_TS_MOD = 1 << 32

#: A packet more than this many packets behind the newest one forwarded is too
#: late to be useful (retransmissions come within a few round trips) and is
#: dropped. Two *consecutive* such packets mean the source restarted its
#: numbering (RFC 3550 A.1): the stream is then resynchronised on them.
LATE_WINDOW = 2048


class RtpRewriter:
    """Maps an incoming RTP stream onto a subscriber's outgoing stream.

    Call :meth:`resync` with the first packet to forward after a gap (a
    keyframe, for video); late packets from before that point are dropped
    because their outgoing numbers would collide with what was already sent.
    Packets after it keep their place, however late (up to :data:`LATE_WINDOW`).
    """

    def __init__(self, *, ssrc: int, payload_type: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        # Random starting points, as RFC 3550 asks; lower half of the sequence
        # space, as aiortc does, to keep SRTP away from an early wrap.
        self._next_seq = random.randrange(0, 0x8000)
        self._seq_offset = 0
        #: Added to an incoming timestamp (mod 2**32) to give the outgoing one.
        self.ts_offset = 0
        self._last_out_ts = random.randrange(0, _TS_MOD)
        self._last_out_time: float | None = None
        self._source_ssrc: int | None = None
        # Extended incoming sequence numbers of the newest packet accepted and of
        # the resync point (None: nothing received yet). Only their difference
        # to an incoming packet matters, so they restart at each resync.
        self._highest: int | None = None
        self._resync_point = 0
        # The number that would confirm a restart of the source's numbering.
        self._bad_seq: int | None = None
        #: Packets dropped as too late or from before the resync point.
        self.late_dropped = 0

    def resync(self, packet: RtpPacket, now: float | None = None) -> None:
        """Make ``packet`` the next outgoing packet after everything already sent."""
        now = time.monotonic() if now is None else now
        seq = packet.sequence_number
        self._seq_offset = (self._next_seq - seq) % _SEQ_MOD
        if self._source_ssrc != packet.ssrc:
            # A new source timeline: continue our timestamps from where they were,
            # advanced by the wall-clock time since the last packet we sent.
            elapsed = 0.0 if self._last_out_time is None else max(0.0, now - self._last_out_time)
            target = (self._last_out_ts + max(1, int(elapsed * self.clock_rate))) % _TS_MOD
            self.ts_offset = (target - packet.timestamp) % _TS_MOD
            self._source_ssrc = packet.ssrc
        # Same source: its timestamps already advanced with real time; keep the offset.
        self._resync_point = seq
        self._highest = seq - 1  # so that ``packet`` is the newest when it comes
        self._bad_seq = None

    def map_sequence(self, packet: RtpPacket, now: float) -> int:
        """The outgoing sequence number of ``packet``, or -1 if it must not be sent.

        The outgoing timestamp is ``(packet.timestamp + self.ts_offset) & 0xFFFFFFFF``.
        This is the per-packet path of every subscriber: integer arithmetic only.
        """
        if self._highest is None or packet.ssrc != self._source_ssrc:
            self.resync(packet, now)
        highest = self._highest
        assert highest is not None
        seq = packet.sequence_number
        # Signed distance to the newest packet, in (-32768, 32767]: unwrapped.
        ext = highest + ((seq - highest + _SEQ_HALF) & 0xFFFF) - _SEQ_HALF
        if ext > highest:
            self._highest = ext
            self._bad_seq = None
            newest = True
        elif ext < highest - LATE_WINDOW:
            if seq != self._bad_seq:
                # Hopelessly late, or the first packet of a renumbered stream.
                self._bad_seq = (seq + 1) & 0xFFFF
                self.late_dropped += 1
                return -1
            logger.debug("source %d renumbered its packets: resynchronising", packet.ssrc)
            self.resync(packet, now)
            self._highest = seq
            newest = True
        elif ext < self._resync_point:
            self.late_dropped += 1
            return -1  # from before the resync point: its number is already used
        else:
            newest = False  # a late packet after the resync point: keeps its place
        out_seq = (seq + self._seq_offset) & 0xFFFF
        if newest:
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._last_out_ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
            self._last_out_time = now
        return out_seq

    def rewrite(self, packet: RtpPacket, now: float | None = None) -> RtpPacket | None:
        """The outgoing copy of ``packet`` as a new RtpPacket, or None if it must not be sent."""
        out_seq = self.map_sequence(packet, time.monotonic() if now is None else now)
        if out_seq < 0:
            return None
        return RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=out_seq,
            timestamp=(packet.timestamp + self.ts_offset) % _TS_MOD,
            ssrc=self.ssrc,
            payload=packet.payload,
        )
