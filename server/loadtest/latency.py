"""Latency through the server under the load test's own load: sampled video packets.

The latency benchmark (bench/latency.py) measures what the SFU adds with one
publisher and a few subscribers beside a no-SFU baseline. The load test asks
the same question at the load it creates: how long a packet takes from a
publisher to a subscriber while the server forwards everyone's media.

Each publisher records when it hands a video packet to SRTP (:class:`SendLog`,
told by its `ClipSender`, or on its DTLS transport's send where aiortc's sender
sends), and a few subscribers, the probes, record when
each video packet has left SRTP (:class:`ProbeCounter`, a `TrackCounter` that
the compiled ingest hands every packet as an aiortc packet). Packets are
matched by their payload: the server rewrites RTP headers but forwards VP8
payloads as they are, and aiortc's VP8 descriptor carries a 15-bit picture id
that makes every packet of the clip distinct for 2^15 frames (18 minutes at
30 fps), even though the clip loops every two seconds (an H.264 clip has no
such id: a payload repeats each loop, and an arrival is matched to the last
send of it before, two seconds from the one before that). A fixed quarter of the
packets, chosen by their fingerprint, is sampled on both sides (audio is left
out: a steady tone's Opus packets repeat, so they cannot be told apart).

Both times are CLOCK_MONOTONIC, which the client processes on one machine
share. What is measured is everything between the two: the publisher's SRTP
and socket, the server, the subscriber's socket and SRTP, and any time the
probe's process waited for a core. The runner gives the probes a process of
their own that asks for real-time priority (worker.py, ``_prioritize``), so
that this wait is not the load's: with the probes among the load's processes,
the p99 measured mostly the clients' queueing. The figure is an upper bound on
what the server adds.
"""

from __future__ import annotations

import array
import bisect
import hashlib
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiortc import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from server.loadtest.cheap_receive import rtp_payload_size
from server.loadtest.receiver_stats import TrackCounter

#: Bytes of the payload a packet is told apart by (VP8 descriptor, picture id and data).
FINGERPRINT_BYTES = 32
#: One packet in this many is sampled (by fingerprint, so both sides pick the same).
SAMPLE_ONE_IN = 4
#: Where the log is kept on the DTLS transport it is attached to (attach() is idempotent).
_LOG_ATTRIBUTE = "_yitang_send_log"


def fingerprint(payload: bytes) -> int:
    """A stable 64-bit fingerprint of a payload's first bytes (the same in every process)."""
    digest = hashlib.blake2b(payload[:FINGERPRINT_BYTES], digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sampled(print_: int) -> bool:
    """Whether a packet of this fingerprint is one of the sampled."""
    return print_ % SAMPLE_ONE_IN == 0


class SendLog:
    """When each sampled packet one publisher sent entered SRTP (monotonic seconds), while
    :attr:`recording`.

    Attached to the publish connection's DTLS transport (again to a new one when
    the media is rebuilt): every RTP packet its senders send passes through
    ``_send_rtp``. Audio packets are logged too (telling them apart costs more
    than keeping them); only video ones are looked up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.recording = False
        #: Each sampled packet's fingerprint and send time, in order of sending. Arrays,
        #: not Python objects: tens of thousands of containers would make the process's
        #: garbage collections long enough to delay what it sends and receives.
        self.prints = array.array("Q")
        self.times = array.array("d")

    def attach(self, dtls: RTCDtlsTransport) -> None:
        """Log what ``dtls`` sends from now on (once per transport)."""
        if getattr(dtls, _LOG_ATTRIBUTE, None) is self:
            return
        send: Callable[[bytes], Coroutine[Any, Any, None]] = dtls._send_rtp

        async def send_and_log(data: bytes) -> None:
            if self.recording:
                self.note(data)
            await send(data)

        dtls._send_rtp = send_and_log  # type: ignore[method-assign]
        setattr(dtls, _LOG_ATTRIBUTE, self)

    def note(self, packet: bytes) -> None:
        """An RTP packet (unprotected) about to be protected and sent."""
        size = rtp_payload_size(packet)
        if size < FINGERPRINT_BYTES:
            return
        padding = packet[-1] if packet[0] & 0x20 else 0
        start = len(packet) - padding - size
        self._note_start(packet[start : start + FINGERPRINT_BYTES])

    def note_payload(self, payload: bytes) -> None:
        """A video packet's payload about to be protected and sent (a `ClipSender`'s
        ``on_send``), while :attr:`recording`."""
        if self.recording and len(payload) >= FINGERPRINT_BYTES:
            self._note_start(payload[:FINGERPRINT_BYTES])

    def _note_start(self, start: bytes) -> None:
        print_ = fingerprint(start)
        if sampled(print_):
            self.prints.append(print_)
            self.times.append(self.clock())


class ArrivalLog:
    """When each sampled video packet reached one probe subscriber, while :attr:`recording`:
    (publisher identity, fingerprint, monotonic seconds)."""

    def __init__(self) -> None:
        self.recording = False
        self.arrived: list[tuple[str, int, float]] = []


class ProbeCounter(TrackCounter):
    """A counter that also notes in ``log`` when each sampled video packet arrived.

    The compiled ingest counts a plain `TrackCounter` in C and hands any other
    counter each packet through :meth:`add`, so this one sees every payload."""

    def __init__(
        self,
        kind: str,
        publisher: str = "?",
        clock: Callable[[], float] = time.monotonic,
        *,
        log: ArrivalLog | None = None,
    ) -> None:
        super().__init__(kind, publisher, clock)
        self.log = ArrivalLog() if log is None else log

    def add(self, packet: RtpPacket) -> tuple[bool, Any]:
        """Count the packet and, while recording, note a sampled one's arrival."""
        log = self.log
        if log.recording and self.kind == "video" and len(packet.payload) >= FINGERPRINT_BYTES:
            print_ = fingerprint(packet.payload[:FINGERPRINT_BYTES])
            if sampled(print_):
                log.arrived.append((self.publisher, print_, self.clock()))
        return super().add(packet)


def send_times(prints: Sequence[int], times: Sequence[float]) -> dict[int, list[float]]:
    """A `SendLog`'s record as fingerprint -> send times in order (a payload can repeat:
    an H.264 clip's loop, which carries no picture id)."""
    sent: dict[int, list[float]] = {}
    for print_, at in zip(prints, times, strict=True):
        sent.setdefault(print_, []).append(at)
    return sent


def latencies(
    sent: dict[str, dict[int, list[float]]], arrivals: list[tuple[str, int, float]]
) -> tuple[list[float], int]:
    """Seconds from send to arrival of each arrival its publisher's log has a send for (the
    last one before it), and how many arrivals had none (sent before the log recorded).

    ``sent``: publisher identity -> fingerprint -> send times in order; ``arrivals``:
    (publisher identity, fingerprint, arrival time)."""
    found: list[float] = []
    missing = 0
    for publisher, print_, arrived in arrivals:
        times = sent.get(publisher, {}).get(print_, [])
        index = bisect.bisect_right(times, arrived)
        if index == 0:
            missing += 1
        else:
            found.append(arrived - times[index - 1])
    return found, missing
