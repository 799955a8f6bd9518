"""Per-subscriber rewriting of forwarded RTP headers (SSRC, PT, sequence, timestamp).

Each subscriber sees one continuous RTP stream from its own sender, whatever
the forwarder skipped (packets dropped while waiting for a keyframe, paused
periods, a publisher that restarted with a new SSRC). Sequence numbers and
timestamps are mapped by offset, so late retransmissions keep their order.
"""

from __future__ import annotations

import logging
import random
import time

from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


def _seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` is after ``b`` (RFC 3550 wrap-around)."""
    return a != b and ((a - b) % _SEQ_MOD) < 0x8000


class RtpRewriter:
    """Maps an incoming RTP stream onto a subscriber's outgoing stream.

    Call :meth:`resync` with the first packet to forward after a gap (a
    keyframe, for video); packets older than that point are dropped because
    their outgoing numbers would collide with what was already sent.
    """

    def __init__(self, *, ssrc: int, payload_type: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        # Random starting points, as RFC 3550 asks; lower half of the sequence
        # space, as aiortc does, to keep SRTP away from an early wrap.
        self._next_seq = random.randrange(0, 0x8000)
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_out_ts = random.randrange(0, _TS_MOD)
        self._last_out_time: float | None = None
        self._source_ssrc: int | None = None
        self._resync_seq: int | None = None
        self._highest_in_seq: int | None = None

    def resync(self, packet: RtpPacket, now: float | None = None) -> None:
        """Make ``packet`` the next outgoing packet after everything already sent."""
        now = time.monotonic() if now is None else now
        self._seq_offset = (self._next_seq - packet.sequence_number) % _SEQ_MOD
        if self._source_ssrc != packet.ssrc:
            # A new source timeline: continue our timestamps from where they were,
            # advanced by the wall-clock time since the last packet we sent.
            elapsed = 0.0 if self._last_out_time is None else max(0.0, now - self._last_out_time)
            target = (self._last_out_ts + max(1, int(elapsed * self.clock_rate))) % _TS_MOD
            self._ts_offset = (target - packet.timestamp) % _TS_MOD
            self._source_ssrc = packet.ssrc
        # Same source: its timestamps already advanced with real time; keep the offset.
        self._resync_seq = packet.sequence_number
        self._highest_in_seq = None

    def rewrite(self, packet: RtpPacket, now: float | None = None) -> RtpPacket | None:
        """The outgoing copy of ``packet``, or None if it must not be sent."""
        if self._resync_seq is None or packet.ssrc != self._source_ssrc:
            self.resync(packet, now)
        assert self._resync_seq is not None
        seq = packet.sequence_number
        if _seq_newer(self._resync_seq, seq):
            return None  # from before the resync point: its number is already used
        out_seq = (seq + self._seq_offset) % _SEQ_MOD
        out_ts = (packet.timestamp + self._ts_offset) % _TS_MOD
        if self._highest_in_seq is None or _seq_newer(seq, self._highest_in_seq):
            self._highest_in_seq = seq
            self._next_seq = (out_seq + 1) % _SEQ_MOD
            self._last_out_ts = out_ts
            self._last_out_time = time.monotonic() if now is None else now
        out = RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=out_seq,
            timestamp=out_ts,
            ssrc=self.ssrc,
            payload=packet.payload,
        )
        return out
