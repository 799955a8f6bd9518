"""What one received track delivered: packets, bytes, frames, loss, freezes.

Load-test subscribers never decode (decoders on the client machine would be
measured instead of the server): each receiving track's jitter buffer is
replaced by a `TrackCounter`, which sees every RTP packet the server forwarded,
straight from the datagram callback. The counts are kept in a `Tally`: with the
compiled ingest built, its C struct (server/media/_ingest_tally.h), which the ingest
counts each packet into, together with aiortc's receiver statistics of the SSRC
(`TalliedStatistics`), without touching a Python object; where it is not built,
`cheap_receive` calls `count_rtp`.
A video frame is a packet with the marker bit; audio is counted per packet (one
Opus packet is 20 ms).

A freeze follows WebRTC's statistics (`freezeCount`): a gap between two frames
longer than max(3 x the average frame interval, the average + 150 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from server.media.aiortc_internals import COMPILED_INGEST_ERROR

if TYPE_CHECKING:
    from server.media._ingest import Tally as CompiledTally


@dataclass
class TrackWindow:
    """A track's totals at the start of the measurement window (subtracted at the end)."""

    packets: int = 0
    bytes: int = 0
    frames: int = 0
    expected: int = 0
    freezes: int = 0
    frozen_seconds: float = 0.0


class Tally:
    """What one received track delivered: the Python reference of the compiled
    ``Tally`` (server/media/_ingest_tally.h), whose counting it is line by line.

    (The compiled one also keeps aiortc's receiver statistics; see `TalliedStatistics`.)
    """

    def __init__(self, kind: str) -> None:
        self.is_video, self.is_audio = kind == "video", kind == "audio"
        self.packets = self.bytes = self.frames = self.freezes = 0
        self.frozen_seconds = self.interval_sum = 0.0
        self.first_seq = self.highest = 0  # extended (wrap-counted) highest sequence number
        self.has_first_seq = False
        self.first_frame_at = self.last_frame_at = 0.0
        self.has_first_frame = self.has_last_frame = False
        #: Packets the compiled ingest counted here from its tally table (never, here).
        self.tallied = 0

    def count(self, sequence_number: int, marker: bool, payload_size: int, now: float) -> None:
        """One packet; `now` is when its frame came, if it ends one (a marker; audio: any)."""
        self.packets += 1
        self.bytes += payload_size + 12
        self._count_sequence(sequence_number & 0xFFFF)
        if marker or self.is_audio:
            self._frame(now)

    def _count_sequence(self, seq: int) -> None:
        if not self.has_first_seq:
            self.first_seq = self.highest = seq
            self.has_first_seq = True
            return
        # Extend the 16-bit number around the highest seen (reordering within half the space).
        extended = self.highest + ((seq - self.highest + 0x8000) % 0x10000) - 0x8000
        self.highest = max(self.highest, extended)

    def _frame(self, now: float) -> None:
        self.frames += 1
        if not self.has_first_frame:
            self.first_frame_at = now
            self.has_first_frame = True
        if self.has_last_frame and self.is_video:
            gap = now - self.last_frame_at
            if self.frames > 2:
                average = self.interval_sum / (self.frames - 2)
                if gap > max(3 * average, average + 0.150):
                    self.freezes += 1
                    self.frozen_seconds += gap
            self.interval_sum += gap
        self.last_frame_at = now
        self.has_last_frame = True


def new_tally(kind: str) -> Tally:
    """The compiled Tally where the ingest is built, else the Python one."""
    if COMPILED_INGEST_ERROR is None:
        from server.media import _ingest

        return cast(Tally, _ingest.Tally(kind))
    return Tally(kind)


class TrackCounter:
    """Counts one received track (installed as its receiver's jitter buffer), in a `Tally`."""

    def __init__(
        self, kind: str, publisher: str = "?", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kind = kind
        self.publisher = publisher
        self.clock = clock
        #: Where the counts are (the compiled ingest counts into it without this object).
        self.tally = new_tally(kind)
        #: Packets that came through `add` as aiortc packets (aiortc's receive path, or what
        #: the ingest hands to Python); the rest were counted in the datagram callback.
        self.added = 0
        self._window = TrackWindow()

    @property
    def packets(self) -> int:
        """Packets received."""
        return self.tally.packets

    @property
    def bytes(self) -> int:
        """Payload bytes received, plus 12 (an RTP header) per packet."""
        return self.tally.bytes

    @property
    def frames(self) -> int:
        """Frames received (video: packets with the marker bit; audio: packets)."""
        return self.tally.frames

    @property
    def freezes(self) -> int:
        """Gaps between frames that WebRTC's statistics count as freezes."""
        return self.tally.freezes

    @property
    def frozen_seconds(self) -> float:
        """Their total length."""
        return self.tally.frozen_seconds

    @property
    def first_frame_at(self) -> float | None:
        """When the first frame came (the counter's clock), or None."""
        return self.tally.first_frame_at if self.tally.has_first_frame else None

    @property
    def tallied(self) -> int:
        """Packets the compiled ingest counted from its tally table: without this object
        or aiortc's receiver statistics' dictionaries (see TalliedStatistics)."""
        return self.tally.tallied

    def add(self, packet: RtpPacket) -> tuple[bool, Any]:
        """Take one packet (aiortc's jitter-buffer interface): count it, never decode."""
        self.added += 1
        self.count_rtp(packet.sequence_number, bool(packet.marker), len(packet.payload))
        return False, None

    def count_rtp(self, sequence_number: int, marker: bool, payload_size: int) -> None:
        """Count one packet (what `cheap_receive` calls, without making an RtpPacket)."""
        now = self.clock() if marker or self.kind == "audio" else 0.0
        self.tally.count(sequence_number, marker, payload_size, now)

    @property
    def expected(self) -> int:
        """Packets the sender sent, as told by the sequence numbers."""
        tally = self.tally
        return tally.highest - tally.first_seq + 1 if tally.has_first_seq else 0

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


def _tally_field(name: str, present: str | None = None) -> property:
    # One of StreamStatistics' per-packet fields, kept in the Tally (None where aiortc's is
    # None: not yet set, as told by the Tally's `present` flag).
    def get(self: TalliedStatistics) -> int | None:
        tally = self.tally
        if present is not None and not getattr(tally, present):
            return None
        value: int = getattr(tally, name)
        return value

    def set_(self: TalliedStatistics, value: int | None) -> None:
        tally = self.tally
        if present is not None:
            setattr(tally, present, value is not None)
        if value is not None:
            setattr(tally, name, value)

    return property(get, set_, doc=f"StreamStatistics' {name}, in the Tally.")


class TalliedStatistics(StreamStatistics):
    """aiortc's receiver statistics of one SSRC whose per-packet fields are a Tally's.

    The compiled ingest makes one of these in place of the receiver's statistics for
    a load-test receiver's SSRC (copying what they had counted), then adds each packet
    in C, on the Tally (``tally_add_statistics``, the port of ``StreamStatistics.add``).
    aiortc's receiver reports read these fields, so the server still learns each
    receiver's loss and jitter; a packet that takes aiortc's path is added by aiortc's
    own ``add``, through these properties."""

    base_seq = _tally_field("base_seq", "has_base_seq")
    max_seq = _tally_field("max_seq", "has_max_seq")
    cycles = _tally_field("cycles")
    packets_received = _tally_field("packets_received")
    _jitter_q4 = _tally_field("jitter_q4")
    _last_arrival = _tally_field("last_arrival", "has_last")
    _last_timestamp = _tally_field("last_timestamp", "has_last")

    def __init__(self, statistics: StreamStatistics, tally: CompiledTally) -> None:
        # Not StreamStatistics.__init__: the fields are the Tally's, copied from `statistics`.
        self.tally = tally
        state = vars(statistics)
        # The codec's clock rate, from aiortc's statistics (the C adds with it).
        self._clockrate = tally.clockrate = state["_clockrate"]
        self._expected_prior = state["_expected_prior"]
        self._received_prior = state["_received_prior"]
        self.base_seq = state["base_seq"]
        self.max_seq = state["max_seq"]
        self.cycles = state["cycles"]
        self.packets_received = state["packets_received"]
        self._jitter_q4 = state["_jitter_q4"]
        self._last_arrival = state["_last_arrival"]
        self._last_timestamp = state["_last_timestamp"]


if COMPILED_INGEST_ERROR is None:
    from server.media import _ingest

    # The compiled ingest counts a TrackCounter's packets into its Tally itself when its
    # clock is time.monotonic (a counter with another clock, in tests, gets its add
    # called), and from the next packet of that SSRC on, straight from the datagram.
    _ingest.configure_counting(
        track_counter=TrackCounter, monotonic=time.monotonic, tallied_statistics=TalliedStatistics
    )
