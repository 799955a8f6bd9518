"""What one received track delivered: packets, bytes, frames, loss, freezes.

Load-test subscribers never decode (decoders on the client machine would be
measured instead of the server): each receiving track's jitter buffer is
replaced by a `TrackCounter`, which sees every RTP packet the server forwarded,
straight from the datagram callback: the server's compiled ingest
(server/media/_ingest.c) runs `count_rtp` itself, on the counter's attributes, for
every packet of the steady state (where it is not built, `cheap_receive` calls it).
A video frame is a packet with the marker bit; audio is counted per packet (one
Opus packet is 20 ms).

A freeze follows WebRTC's statistics (`freezeCount`): a gap between two frames
longer than max(3 x the average frame interval, the average + 150 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtp import RtpPacket

from server.media.aiortc_internals import COMPILED_INGEST_ERROR


@dataclass
class TrackWindow:
    """A track's totals at the start of the measurement window (subtracted at the end)."""

    packets: int = 0
    bytes: int = 0
    frames: int = 0
    expected: int = 0
    freezes: int = 0
    frozen_seconds: float = 0.0


@dataclass
class TrackCounter:
    """Counts one received track (installed as its receiver's jitter buffer)."""

    kind: str
    publisher: str = "?"
    clock: Callable[[], float] = time.monotonic
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    freezes: int = 0
    frozen_seconds: float = 0.0
    #: Packets that came through `add` as aiortc packets (aiortc's receive path, or what the
    #: ingest hands to Python); the rest were counted in the datagram callback without one.
    added: int = 0
    first_frame_at: float | None = None
    _first_seq: int | None = None
    _highest: int = 0  # extended (wrap-counted) highest sequence number
    _last_frame_at: float | None = None
    _interval_sum: float = 0.0
    _window: TrackWindow = field(default_factory=TrackWindow)

    def add(self, packet: RtpPacket) -> tuple[bool, Any]:
        """Take one packet (aiortc's jitter-buffer interface): count it, never decode."""
        self.added += 1
        self.count_rtp(packet.sequence_number, bool(packet.marker), len(packet.payload))
        return False, None

    def count_rtp(self, sequence_number: int, marker: bool, payload_size: int) -> None:
        """Count one packet (what `cheap_receive` calls, without making an RtpPacket; the
        compiled ingest runs its port, ``counter_count`` in server/media/_ingest.c)."""
        self.packets += 1
        self.bytes += payload_size + 12
        self._count_sequence(sequence_number)
        if marker or self.kind == "audio":
            self._frame(self.clock())

    @property
    def expected(self) -> int:
        """Packets the sender sent, as told by the sequence numbers."""
        return 0 if self._first_seq is None else self._highest - self._first_seq + 1

    def start_window(self) -> None:
        """The measurement starts now: later figures count from here."""
        self._window = TrackWindow(
            self.packets, self.bytes, self.frames, self.expected, self.freezes, self.frozen_seconds
        )

    def window(self, seconds: float) -> dict[str, Any]:
        """What the track delivered since `start_window`, over `seconds`."""
        start = self._window
        packets = self.packets - start.packets
        expected = self.expected - start.expected
        return {
            "kind": self.kind,
            "publisher": self.publisher,
            "fps": (self.frames - start.frames) / seconds if self.kind == "video" else None,
            "packets_per_second": packets / seconds,
            "kbps": (self.bytes - start.bytes) * 8 / seconds / 1000,
            "loss": max(0.0, 1 - packets / expected) if expected > 0 else 0.0,
            "freezes": self.freezes - start.freezes if self.kind == "video" else None,
            "frozen_seconds": self.frozen_seconds - start.frozen_seconds,
        }

    def _count_sequence(self, seq: int) -> None:
        if self._first_seq is None:
            self._first_seq = self._highest = seq
            return
        # Extend the 16-bit number around the highest seen (reordering within half the space).
        extended = self._highest + ((seq - self._highest + 0x8000) % 0x10000) - 0x8000
        self._highest = max(self._highest, extended)

    def _frame(self, now: float) -> None:
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self._last_frame_at is not None and self.kind == "video":
            gap = now - self._last_frame_at
            if self.frames > 2:
                average = self._interval_sum / (self.frames - 2)
                if gap > max(3 * average, average + 0.150):
                    self.freezes += 1
                    self.frozen_seconds += gap
            self._interval_sum += gap
        self._last_frame_at = now


if COMPILED_INGEST_ERROR is None:
    from server.media import _ingest

    # The compiled ingest counts a TrackCounter's packets itself (count_rtp, _count_sequence
    # and _frame ported to C; pinned in COMPILED_INGEST_PORTED_SOURCES) when its clock
    # is time.monotonic; a counter with another clock (tests) gets its add called.
    _ingest.configure_counting(track_counter=TrackCounter, monotonic=time.monotonic)
