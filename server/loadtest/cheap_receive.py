"""Cheap receive path for load and benchmark clients: count authentic RTP, nothing else.

A load-test or benchmark receiver only counts what the server forwarded
(`receiver_stats.TrackCounter`, installed as each receiver's jitter buffer).
Through aiortc's own receive path every datagram costs far more than the
counting: aioice queues it, the DTLS transport's receive task wakes up (one
event loop iteration and several coroutine frames), SRTP-unprotects it,
``RtpPacket.parse`` builds an object with its header extensions, and the
receiver's ``_handle_rtp_packet`` feeds the REMB estimator, the NACK generator
and the depayloader before the jitter buffer. Twelve venues receiving each
other are ~16 000 packets/s: clients on two cores starved on that path (README,
*Quality tiers benchmark*).

:class:`CheapReceive` is installed, like the server's direct ingest
(``server.media.aiortc_internals.DirectIngest``), in aioice's datagram callback
of a connected subscribe connection. For an SRTP packet (not SRTCP: RFC 7983
and aiortc's ``is_rtcp`` test) whose SSRC aiortc's router gives to a receiver
whose jitter buffer is an :class:`RtpCounter`, with one of that receiver's
media (non-RTX) payload types, it

* unprotects it with the DTLS transport's own receive SRTP session (one call
  into libsrtp: what is counted is authentic and not replayed; a forged,
  tampered or replayed datagram is dropped, as aiortc drops it, and counted in
  ``rejected``);
* reads sequence number, timestamp, marker and payload length from the header
  with ``struct`` (CSRCs, header extension and padding skipped, malformed
  packets dropped as ``RtpPacket.parse`` would);
* updates the receiver's statistics for its RTCP receiver reports (aiortc's
  ``StreamStatistics``: the server still hears each receiver's loss and jitter,
  so its per-receiver adaptation works as with aiortc's path);
* and calls the counter. That is all.

So a hooked packet feeds **no REMB estimator, no NACK generator (no
retransmission is asked for: loss stays loss, which the counters measure from
sequence numbers), no PLI, no depayloader, no decoder**, and is not in
``getSynchronizationSources`` nor the transport's byte counters. Everything
else takes aiortc's path unchanged: DTLS, STUN (never reaches this callback),
SRTCP (sender reports, BYE), RTP of an SSRC aiortc's router does not know yet
or gives to a receiver that decodes, RTX, anything before the DTLS transport is
connected, and any datagram while aioice's queue holds others (order of
arrival). The counter's ``add`` still counts what comes that way.

Nothing raised here may reach asyncio (it would close the client's socket): a
failure is logged and the packet dropped.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import pylibsrtp
from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import StreamStatistics

from server.media.aiortc_internals import (
    AIOICE_DATA_RECEIVED_METHOD,
    AIOICE_QUEUE_ATTRIBUTE,
    ICE_CONNECTION_ATTRIBUTE,
    INGEST_DTLS_ATTRIBUTES,
    INGEST_RECEIVER_ATTRIBUTES,
    ROUTER_SSRC_TABLE_ATTRIBUTE,
    SrtpUnprotector,
    is_rtp_datagram,
)

logger = logging.getLogger(__name__)

#: First byte (V, P, X, CC), marker + payload type, sequence number, timestamp, SSRC.
_HEADER = struct.Struct("!BBHII")
_EXTENSION_LENGTH = struct.Struct("!H")
_CONNECTED = DtlsState.CONNECTED
_STATE = INGEST_DTLS_ATTRIBUTES["state"]
_RX_SRTP = INGEST_DTLS_ATTRIBUTES["rx_srtp"]
_ENABLED = INGEST_RECEIVER_ATTRIBUTES["enabled"]

#: Where the hook is kept on the aioice connection it is installed on (install() is
#: idempotent, also when something wraps the callback after us; a registry beside
#: the connection would keep it alive: the hook refers to it).
_HOOK_ATTRIBUTE = "_yitang_cheap_receive"


class RtpCounter(Protocol):
    """What a receiver's jitter buffer must offer for its packets to be hooked."""

    def count_rtp(self, sequence_number: int, marker: bool, payload_size: int) -> None:
        """One authentic RTP packet of the track (payload without padding, in bytes)."""
        ...


def rtp_payload_size(packet: bytes) -> int:
    """The payload length of an (unprotected) RTP packet, without CSRCs, header
    extension and padding; -1 if the packet is malformed (as ``RtpPacket.parse``
    would refuse it)."""
    size = len(packet)
    if size < 12 or packet[0] >> 6 != 2:
        return -1
    first = packet[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if size < offset + 4:
            return -1
        offset += 4 + 4 * _EXTENSION_LENGTH.unpack_from(packet, offset + 2)[0]
    if offset > size:
        return -1
    end = size
    if first & 0x20:
        padding = packet[-1]
        if not padding or padding > size - offset:
            return -1
        end -= padding
    return end - offset


class _Header:
    """The two fields ``StreamStatistics.add`` reads of a packet (one reused per hook)."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


@dataclass(slots=True)
class _Target:
    """A receiver whose packets are hooked: its counter and what aiortc keeps for it."""

    receiver_state: dict[str, Any]  # the receiver's instance dict (``_enabled`` changes)
    count: Any  # the counter's bound count_rtp
    clock_rates: dict[int, int]  # media payload type -> clock rate (RTX left out)
    streams: dict[int, StreamStatistics]  # SSRC -> statistics for the receiver reports


class CheapReceive:
    """Counts a connection's RTP in aioice's datagram callback (see the module doc)."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = vars(dtls)
        router = self._dtls[INGEST_DTLS_ATTRIBUTES["router"]]
        self._ssrc_table: dict[int, Any] = getattr(router, ROUTER_SSRC_TABLE_ATTRIBUTE)
        connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE)
        self._queue = getattr(connection, AIOICE_QUEUE_ATTRIBUTE)
        self._aiortc_path = connection.data_received
        self._targets: dict[Any, _Target | None] = {}  # receiver -> target (None: not hooked)
        self._unprotector: SrtpUnprotector | None = None
        self._header = _Header()
        #: Counters: RTP packets counted here; datagrams dropped as not authentic or
        #: replayed (SRTP); dropped as malformed RTP; dropped after a failure here.
        self.packets = 0
        self.rejected = 0
        self.malformed = 0
        self.errors = 0

    @classmethod
    def install(cls, dtls: RTCDtlsTransport) -> CheapReceive:
        """Install on the DTLS transport's aioice connection (again: the same hook)."""
        connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE)
        hook: CheapReceive | None = getattr(connection, _HOOK_ATTRIBUTE, None)
        if hook is None:
            hook = cls(dtls)
            setattr(connection, _HOOK_ATTRIBUTE, hook)
            setattr(connection, AIOICE_DATA_RECEIVED_METHOD[0], hook.data_received)
        return hook

    def data_received(self, data: bytes, component: int) -> None:
        """aioice's callback for a datagram that is not STUN."""
        try:
            if (
                is_rtp_datagram(data)
                and component == 1
                and self._queue.empty()
                and self._hooked(data)
            ):
                return
        except Exception:
            self.errors += 1
            if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th ... time
                logger.exception("cheap receive failed (%d times)", self.errors)
            return
        self._aiortc_path(data, component)

    def _hooked(self, data: bytes) -> bool:
        """Count ``data`` if it is ours (True: handled, counted or dropped)."""
        dtls = self._dtls
        session = dtls[_RX_SRTP]
        if session is None or dtls[_STATE] is not _CONNECTED:
            return False
        _, marker_type, _, _, ssrc = _HEADER.unpack_from(data)
        receiver = self._ssrc_table.get(ssrc)
        if receiver is None:
            return False  # aiortc may learn it from the payload type, or drop it
        targets = self._targets
        if receiver in targets:
            target = targets[receiver]
        else:
            target = targets[receiver] = self._target(receiver)
        if target is None or not target.receiver_state[_ENABLED]:
            return False
        clock_rate = target.clock_rates.get(marker_type & 0x7F)
        if clock_rate is None:
            return False  # RTX or a payload type aiortc would refuse: its path decides
        unprotector = self._unprotector
        if unprotector is None or unprotector.session is not session:
            unprotector = self._unprotector = SrtpUnprotector(session)
        try:
            packet = unprotector.unprotect(data)
        except pylibsrtp.Error:
            self.rejected += 1  # forged, tampered, replayed: aiortc drops it too
            return True
        payload_size = rtp_payload_size(packet)
        if payload_size < 0:
            self.malformed += 1
            return True
        _, marker_type, sequence_number, timestamp, _ = _HEADER.unpack_from(packet)
        stream = target.streams.get(ssrc)
        if stream is None:
            stream = target.streams[ssrc] = StreamStatistics(clock_rate)
        header = self._header
        header.sequence_number = sequence_number
        header.timestamp = timestamp
        stream.add(header)  # type: ignore[arg-type]  # reads these two fields only
        target.count(sequence_number, marker_type > 127, payload_size)
        self.packets += 1
        return True

    @staticmethod
    def _target(receiver: Any) -> _Target | None:
        state = vars(receiver)
        count = getattr(state.get(INGEST_RECEIVER_ATTRIBUTES["jitter_buffer"]), "count_rtp", None)
        if not callable(count):
            return None  # a receiver that decodes keeps aiortc's path
        codecs = state[INGEST_RECEIVER_ATTRIBUTES["codecs"]]
        return _Target(
            receiver_state=state,
            count=count,
            clock_rates={pt: c.clockRate for pt, c in codecs.items() if not is_rtx(c)},
            streams=state[INGEST_RECEIVER_ATTRIBUTES["remote_streams"]],
        )


def install(pc: RTCPeerConnection) -> list[CheapReceive]:
    """Hook the RTP of ``pc``'s counting receivers (see the module doc).

    Call after the local description is set (the transports exist), before the
    answer is sent; again after each renegotiation is harmless (receivers added
    later are found through aiortc's router). Returns the hooks, one per transport.
    """
    hooks: list[CheapReceive] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            hook = CheapReceive.install(dtls)
            if hook not in hooks:
                hooks.append(hook)
    return hooks
