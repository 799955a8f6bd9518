"""A peer connection's counters, read where aiortc keeps them, for metrics and the
control room.

aiortc's ``RTCPeerConnection.getStats()`` gathers a coroutine per sender and per
receiver (a task each), and every one of them builds statistics objects with a
datetime and its transport's statistics again. A subscriber receiving 84 tracks
made ~170 tasks and objects per read; the node's metrics sampler read every
peer connection that way every 5 s, and on a 21 + 63 session that held the
event loop 5-19 ms each time, twenty times in two minutes (no packet is
forwarded meanwhile: README, *Load test*).

:func:`read_counters` reads the same numbers straight from the objects (one
synchronous pass, no task, nothing allocated per track beyond the result), so
that a reader can read one connection, yield to the loop, and read the next.
The figures are those ``getStats()`` reports (the tests compare the two on real
peers), including aiortc's choice of one inbound stream per receiver: the last
SSRC it received from (its statistics are keyed by receiver, so a later SSRC's
replace an earlier one's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from server.media.aiortc_internals import (
    INGEST_DTLS_ATTRIBUTES,
    RECEIVER_ATTRIBUTES,
    SENDER_ATTRIBUTES,
    HookedRtpSender,
)

#: RTCDtlsTransport's own byte counters (what getStats' "transport" entry reports).
_TRANSPORT_BYTES_RECEIVED = INGEST_DTLS_ATTRIBUTES["rx_bytes"]
_TRANSPORT_BYTES_SENT = "_RTCDtlsTransport__tx_bytes"
_RECEIVER_KIND = "_RTCRtpReceiver__kind"


@dataclass(frozen=True, slots=True)
class InboundStream:
    """What a receiver got from its publisher (getStats' ``inbound-rtp``)."""

    #: Unique per receiver and SSRC while the receiver lives.
    key: tuple[int, int]
    kind: str
    packets_received: int
    packets_lost: int


@dataclass(frozen=True, slots=True)
class RemoteReport:
    """The last receiver report block about one of our senders (``remote-inbound-rtp``)."""

    #: Unique per sender while it lives.
    key: int
    kind: str
    #: When the report came (``time.time()``): a new report has a new time.
    received_at: float
    #: RTCP's fraction lost, 0-255 (256ths of the packets of the report's interval).
    fraction_lost: int
    round_trip_time: float | None


@dataclass(frozen=True, slots=True)
class ConnectionCounters:
    """One read of a peer connection."""

    #: Per DTLS transport (its statistics id): bytes in and out, SRTP and RTCP included.
    transport_bytes: dict[str, tuple[int, int]]
    #: The senders' RTP payload bytes (getStats' ``outbound-rtp`` bytesSent, summed).
    payload_bytes_sent: int
    inbound: tuple[InboundStream, ...]
    reports: tuple[RemoteReport, ...]


def read_counters(pc: RTCPeerConnection) -> ConnectionCounters:
    """``pc``'s counters now (see the module). Reading a closed connection is harmless:
    its counters stay as they were."""
    transports: dict[str, tuple[int, int]] = {}
    payload_bytes = 0
    inbound: list[InboundStream] = []
    reports: list[RemoteReport] = []
    for sender in pc.getSenders():
        _read_transport(sender.transport, transports)
        payload_bytes += int(getattr(sender, SENDER_ATTRIBUTES["octet_count"], 0) or 0)
        report = _remote_report(sender)
        if report is not None:
            reports.append(report)
    for receiver in pc.getReceivers():
        _read_transport(receiver.transport, transports)
        stream = _inbound_stream(receiver)
        if stream is not None:
            inbound.append(stream)
    return ConnectionCounters(transports, payload_bytes, tuple(inbound), tuple(reports))


def _read_transport(transport: Any, into: dict[str, tuple[int, int]]) -> None:
    stats_id = getattr(transport, "_stats_id", None)
    if stats_id is None or stats_id in into:
        return
    state = vars(transport)
    into[stats_id] = (
        int(state.get(_TRANSPORT_BYTES_RECEIVED, 0)),
        int(state.get(_TRANSPORT_BYTES_SENT, 0)),
    )


def _remote_report(sender: RTCRtpSender) -> RemoteReport | None:
    kind = str(getattr(sender, SENDER_ATTRIBUTES["kind"], ""))
    if isinstance(sender, HookedRtpSender):
        if sender.report_time == 0.0:
            return None
        return RemoteReport(
            key=id(sender),
            kind=kind,
            received_at=sender.report_time,
            fraction_lost=sender.report_fraction_lost,
            round_trip_time=getattr(sender, SENDER_ATTRIBUTES["rtt"], None),
        )
    # aiortc's own sender keeps the statistics object it made for the report.
    stats = getattr(sender, SENDER_ATTRIBUTES["stats"], None) or {}
    for entry in stats.values():
        if entry.type == "remote-inbound-rtp":
            return RemoteReport(
                key=id(sender),
                kind=kind,
                received_at=entry.timestamp.timestamp(),
                fraction_lost=entry.fractionLost or 0,
                round_trip_time=entry.roundTripTime,
            )
    return None


def _inbound_stream(receiver: RTCRtpReceiver) -> InboundStream | None:
    streams = getattr(receiver, RECEIVER_ATTRIBUTES["remote_streams"], None)
    if not streams:
        return None
    # aiortc's getStats keys a receiver's entry by the receiver: the last SSRC wins.
    ssrc, stream = next(reversed(streams.items()))
    return InboundStream(
        key=(id(receiver), ssrc),
        kind=str(getattr(receiver, _RECEIVER_KIND, "")),
        packets_received=int(stream.packets_received),
        packets_lost=int(stream.packets_lost),
    )
