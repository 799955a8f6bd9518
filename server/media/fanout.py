"""The compiled forwarding fan-out (``_fanout.c``), or the pure-Python path when it is off.

With the extension built (``pip install -e .``, which ``scripts/bootstrap``
runs), each received packet goes to all of a track's subscribers in one C call,
:func:`forward`: per subscriber it patches the prebuilt header, copies the
payload, calls libsrtp's ``srtp_protect`` and ``sendto`` — what the Python
path does, without the interpreter around it (README, *Forwarding benchmark*,
says why this is C). Only the steady state runs there: every rule (gating,
keyframes, resync, late packets, overflow, a closed transport) stays in the
Python path, :meth:`ForwardingSender.on_packet`, which C hands a subscriber's
packet back to whenever the steady state does not hold, and which works on the
same state (a :class:`CompiledStream` is also the subscriber's rewriter).

Copies made while the compiled ingest's reader handles a publisher's socket are
queued and sent when it is done, each subscriber's in order, runs of equal size in
one UDP GSO ``sendmsg`` (a video frame's packets to one subscriber: one send, where
there were as many as the frame had packets); ``YITANG_GSO=off`` sends each copy
at once instead (docs/forwarding.md, *Batched sends*).

``YITANG_FANOUT=python`` turns the compiled path off (the reference, for
comparison and tests). Without the extension the Python path runs and
:data:`IMPORT_ERROR` says why; ``scripts/bootstrap`` refuses to finish without
it, and the compiled half of the forwarding tests fails under ``CI=true``
(``tests/media/conftest.py``, ``fanout_path``).
"""

from __future__ import annotations

import os
import random
import time
from typing import Protocol

from aiortc.rtp import RtpPacket

from .rtp_header import OutgoingHeader
from .rtp_rewriter import LATE_WINDOW, RtpRewriter

#: The environment variable that selects the fan-out ("python": the reference path).
ENVIRONMENT_VARIABLE = "YITANG_FANOUT"

IMPORT_ERROR: ImportError | None
#: A capsule of the count of datagrams the compiled fan-out sent in this process (the
#: compiled ingest reads it to time the forward delay), or None.
datagrams_sent: object = None
#: A capsule of what the compiled ingest's reader and the fan-out share while the reader
#: handles a socket's datagrams (the packet's arrival, for the copy delay; the batch of
#: copies sent at its end with UDP GSO), or None.
batch: object = None
try:
    from ._fanout import Stream as _Stream
    from ._fanout import (
        batch,
        copy_delays,
        datagrams_sent,
        forward,
        gso_stats,
        open_batch,
        send_batch,
        set_gso,
    )

    IMPORT_ERROR = None
except ImportError as exc:  # not built: the Python path runs
    IMPORT_ERROR = exc

#: Whether new forwarding senders use the compiled path (tests switch it).
enabled: bool = IMPORT_ERROR is None and os.environ.get(ENVIRONMENT_VARIABLE, "") != "python"

#: The environment variable that turns the batched sends off ("off": each copy is sent as
#: it is made, as before UDP GSO; for comparisons).
GSO_ENVIRONMENT_VARIABLE = "YITANG_GSO"
if IMPORT_ERROR is None and os.environ.get(GSO_ENVIRONMENT_VARIABLE, "") == "off":
    set_gso(False)


def available() -> bool:
    """True if the extension is built and importable."""
    return IMPORT_ERROR is None


class Rewriter(Protocol):
    """What the sender needs of a rewriter (:class:`RtpRewriter` or :class:`CompiledStream`)."""

    ts_offset: int
    late_dropped: int

    def resync(self, packet: RtpPacket, now: float | None = None) -> None:
        """Make ``packet`` the next outgoing packet after everything already sent."""
        ...

    def map_sequence(self, packet: RtpPacket, now: float) -> int:
        """The outgoing sequence number of ``packet``, or -1 if it must not be sent."""
        ...

    def rewrite(self, packet: RtpPacket, now: float | None = None) -> RtpPacket | None:
        """The outgoing copy of ``packet``, or None if it must not be sent."""
        ...


if IMPORT_ERROR is None:

    class CompiledStream(_Stream):
        """One subscriber's stream in C: :class:`RtpRewriter`'s state and methods, and more.

        Also holds the prebuilt header, the sender-report counters, where the
        NACK history goes and, once connected, the SRTP session and socket.
        """

        def rewrite(self, packet: RtpPacket, now: float | None = None) -> RtpPacket | None:
            """As :meth:`RtpRewriter.rewrite` (used by tests; not the forwarding path)."""
            out_seq = self.map_sequence(packet, time.monotonic() if now is None else now)
            if out_seq < 0:
                return None
            return RtpPacket(
                payload_type=self.payload_type,
                marker=packet.marker,
                sequence_number=out_seq,
                timestamp=(packet.timestamp + self.ts_offset) % (1 << 32),
                ssrc=self.ssrc,
                payload=packet.payload,
            )


def new_stream(
    *, ssrc: int, payload_type: int, clock_rate: int, header: OutgoingHeader | None = None
) -> CompiledStream:
    """A compiled stream (requires :func:`available`), random start as RFC 3550 asks."""
    stream = CompiledStream(
        ssrc=ssrc,
        payload_type=payload_type,
        clock_rate=clock_rate,
        # As RtpRewriter: lower half of the sequence space, as aiortc does.
        next_seq=random.randrange(0, 0x8000),
        last_out_ts=random.randrange(0, 1 << 32),
        late_window=LATE_WINDOW,
    )
    if header is not None:
        stream.set_header(*header.layout())
    return stream


def new_rewriter(*, ssrc: int, payload_type: int, clock_rate: int, compiled: bool) -> Rewriter:
    """An :class:`RtpRewriter`, or its compiled equivalent (tests run both)."""
    if compiled:
        return new_stream(ssrc=ssrc, payload_type=payload_type, clock_rate=clock_rate)
    return RtpRewriter(ssrc=ssrc, payload_type=payload_type, clock_rate=clock_rate)


__all__ = [
    "ENVIRONMENT_VARIABLE",
    "GSO_ENVIRONMENT_VARIABLE",
    "IMPORT_ERROR",
    "Rewriter",
    "available",
    "batch",
    "copy_delays",
    "datagrams_sent",
    "enabled",
    "forward",
    "gso_stats",
    "new_rewriter",
    "new_stream",
    "open_batch",
    "send_batch",
    "set_gso",
]
