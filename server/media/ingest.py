"""How a publisher's RTP reaches its packet taps: directly, or through aiortc's receive task.

By default each publish and each subscribe connection gets a
:class:`~server.media.aiortc_internals.DirectIngest`: SRTP-protected RTP is
unprotected, parsed and handed to the receiver's packet handling in aioice's
datagram callback, without aiortc's queue and receive task in between (one
event loop iteration and several coroutine frames per packet; see
docs/forwarding.md, *Ingest*), and so is SRTCP (a subscriber's receiver
reports, REMB, NACK and PLI reach our senders there). The steady state of the
RTP path, and the REMB estimator, run compiled (server/media/_ingest.c) when
the extension is built. ``YITANG_INGEST=python`` keeps the direct ingest all in
Python, ``YITANG_INGEST=aiortc`` keeps aiortc's own path (the references, for
comparison and tests); all feed the same receiver and sender state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver

from . import fanout
from .active_speaker import AudioLevelMeter
from .aiortc_internals import COMPILED_INGEST_ERROR, DirectIngest
from .packet_tap import PacketTap
from .track_forwarder import TrackForwarder

#: The environment variable that selects the ingest path ("aiortc": aiortc's own;
#: "python": the direct ingest without its compiled steady state).
ENVIRONMENT_VARIABLE = "YITANG_INGEST"

#: Whether new connections use the direct ingest (tests switch it).
enabled: bool = os.environ.get(ENVIRONMENT_VARIABLE, "") != "aiortc"
#: Whether new direct ingests run their steady state compiled (tests switch it).
compiled: bool = (
    COMPILED_INGEST_ERROR is None and os.environ.get(ENVIRONMENT_VARIABLE, "") != "python"
)


if COMPILED_INGEST_ERROR is None:
    from . import _ingest

    # The compiled path forwards too: TrackForwarder.on_packet's steady state, then the
    # compiled fan-out, for packets its packet tap would hand to that method.
    _ingest.configure_forwarding(
        packet_tap=PacketTap,
        on_packet=TrackForwarder.on_packet,
        forward=fanout.forward if fanout.available() else None,
        audio_level_meter=AudioLevelMeter,
        datagrams_sent=fanout.datagrams_sent,
        batch=fanout.batch,
    )


def compiled_available() -> bool:
    """True if the compiled ingest (server/media/_ingest.c) is built and importable."""
    return COMPILED_INGEST_ERROR is None


@dataclass(frozen=True)
class ForwardDelays:
    """How long this process held publishers' packets: from the kernel's receipt of an
    RTP packet (its socket's SO_TIMESTAMPNS time) to the end of its handling, for each
    packet the compiled fan-out sent a copy of. That is the time the packet waited in
    the socket while the process was busy (a collection, another room's work), plus
    the time to send its last copy. Timed where the node's event loop reads the socket
    in C (server/media/event_loop.py); copies sent later (a subscriber whose socket
    was full) are not in it. Per process, as the fan-out's count is."""

    #: Upper bounds of the buckets, in seconds (ascending; +Inf after the last).
    bounds: tuple[float, ...]
    #: Packets (copies, in the copy delay) per bucket, not cumulative: one more than
    #: ``bounds`` (the last is +Inf).
    counts: tuple[int, ...]
    #: The sum of the delays, in seconds.
    sum: float


def forward_delays() -> ForwardDelays | None:
    """The forward delay's histogram so far in this process (None: not compiled)."""
    if COMPILED_INGEST_ERROR is not None:
        return None
    bounds, counts, total = _ingest.forward_delays()
    return ForwardDelays(bounds=bounds, counts=counts, sum=total)


def copy_delays() -> ForwardDelays | None:
    """The copy delay's histogram so far in this process (None: not compiled): as the
    forward delay, but up to each copy sent rather than the last, so one count per
    copy. It is what each receiver's packet waited in this process; the definition of
    the latency benchmark's "added" per received packet (bench/latency.py). Each copy's
    delay is at most its packet's forward delay."""
    if COMPILED_INGEST_ERROR is not None or not fanout.available():
        return None
    bounds, counts, total = fanout.copy_delays()
    return ForwardDelays(bounds=bounds, counts=counts, sum=total)


def install(pc: RTCPeerConnection) -> list[DirectIngest]:
    """Take over the RTP of ``pc``'s receivers (idempotent; call after the local
    description is set, when the transports exist). Returns the installed ingests."""
    if not enabled:
        return []
    by_transport: dict[RTCDtlsTransport, list[RTCRtpReceiver]] = {}
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        by_transport.setdefault(receiver.transport, []).append(receiver)
    ingests = []
    for transport, receivers in by_transport.items():
        ingests.append(DirectIngest.install(transport, receivers, compiled=compiled))
    return ingests
