"""Every touch of aiortc / aioice internals, in one place.

aiortc is pinned exactly (``aiortc==1.16.0``) because the forwarding SFU needs
things aiortc does not expose:

* the receiver's jitter buffer, replaced by a packet tap so that encoded RTP is
  taken after SRTP, RTX unwrapping and NACK generation but before any decoding;
* the receive path under aioice's datagram callback (the connection's queue,
  the DTLS transport's SRTP session, router and counters, the receiver's
  estimator, statistics, NACK generator and RTCP methods): the direct ingest
  handles a publisher's RTP in the callback, without the receive task;
* the sender's RTP loop, replaced so that already-encoded packets are sent
  without going through an encoder (``encoder.pack()`` and the jitter buffer
  would add latency), while aiortc's own RTCP loop keeps sending sender reports
  from our counters (read through properties at report time) and keeps
  answering NACKs from our history;
* the send path under ``RTCDtlsTransport._send_rtp`` (DTLS state, SRTP session,
  aioice's nominated pair and its datagram transport), called synchronously:
  the forwarding fan-out encrypts and sends without a coroutine per packet, and
  calls libsrtp's ``srtp_protect`` on pylibsrtp's session buffer directly;
* a way to swap the sender of a transceiver for our subclass;
* the RTCP PLI method of the receiver, to ask a publisher for a keyframe;
* the host addresses aioice gathers on (it never gathers loopback by itself).

``tests/media/test_aiortc_internals.py`` checks each name used here, so an
aiortc upgrade fails with a message naming what moved. Nothing else in
``server.media`` may use a private aiortc/aioice name.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import contextvars
import datetime
import functools
import inspect
import ipaddress
import logging
import random
import struct
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

import aioice.ice
import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import clock as aiortc_clock
from aiortc.codecs import depayload, is_rtx
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtcrtpsender import RTT_ALPHA
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_SR,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from aiortc.stats import RTCRemoteInboundRtpStreamStats, RTCStatsReport
from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from . import outbound_srtp, rtcp_handling
from .outbound_srtp import OutboundSrtpProtector
from .sent_history import SentHistoryLike, new_sent_history

if TYPE_CHECKING:
    from .fanout import CompiledStream

#: The direct ingest's compiled steady state and REMB estimator (server/media/_ingest.c),
#: or None if not built (then why, in COMPILED_INGEST_ERROR).
COMPILED_INGEST_ERROR: ImportError | None
try:
    from . import _ingest as compiled_ingest
except ImportError as _exc:  # not built: the Python direct ingest runs
    compiled_ingest = None  # type: ignore[assignment]
    COMPILED_INGEST_ERROR = _exc
else:
    COMPILED_INGEST_ERROR = None
    compiled_ingest.configure(
        rtp_packet=RtpPacket,
        header_extensions=HeaderExtensions,
    )

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

logger = logging.getLogger(__name__)

# --- Names we rely on (checked by tests/media/test_aiortc_internals.py) -------------

#: Private attributes of RTCRtpSender instances (name-mangled ``__x`` fields).
SENDER_ATTRIBUTES: Final = {
    "rtp_started": "_RTCRtpSender__rtp_started",
    "rtp_exited": "_RTCRtpSender__rtp_exited",
    "rtp_history": "_RTCRtpSender__rtp_history",
    "header_extensions_map": "_RTCRtpSender__rtp_header_extensions_map",
    "mid": "_RTCRtpSender__mid",
    "ntp_timestamp": "_RTCRtpSender__ntp_timestamp",
    "rtp_timestamp": "_RTCRtpSender__rtp_timestamp",
    "octet_count": "_RTCRtpSender__octet_count",
    "packet_count": "_RTCRtpSender__packet_count",
    "ssrc": "_ssrc",
    "stream_id": "_stream_id",
    "track_id": "_track_id",
    "rtcp_started": "_RTCRtpSender__rtcp_started",
    "rtcp_exited": "_RTCRtpSender__rtcp_exited",
    "cname": "_RTCRtpSender__cname",
    "lsr": "_RTCRtpSender__lsr",
    "lsr_time": "_RTCRtpSender__lsr_time",
    # What a receiver report block sets (HookedRtpSender._take_reports) and getStats reads.
    "rtt": "_RTCRtpSender__rtt",
    "stats": "_RTCRtpSender__stats",
    "kind": "_RTCRtpSender__kind",
}
#: Private methods of RTCRtpSender we override, with their parameter names.
SENDER_METHODS: Final = {
    "_run_rtp": ("self", "codec"),
    "_send_keyframe": ("self",),
    "_retransmit": ("self", "sequence_number"),
    "_handle_rtcp_packet": ("self", "packet"),
    "_run_rtcp": ("self",),
}
#: SHA-256 of aiortc's sender and receiver RTCP loops, whose reports TransportSenderReports
#: and TransportReceiverReports send for all of a transport's senders or receivers at
#: once: a change must be compared and ported.
REPORTS_PORTED_SOURCES: Final = {
    "RTCRtpSender._run_rtcp": "51e0a924eac4e39ba2f333981f298e3f16305582977c5e73fa7128e6f800ab0d",
    "RTCRtpReceiver._run_rtcp": "0f57daa3218616c0d729d4209fbe788e680b17b8bbeeabe8d5fe4efc6a25cbce",
}
#: Private attributes / methods of RTCRtpReceiver instances.
RECEIVER_ATTRIBUTES: Final = {
    "jitter_buffer": "_RTCRtpReceiver__jitter_buffer",
    # ssrc => StreamStatistics (packets_received, packets_expected): the publisher's uplink loss.
    "remote_streams": "_RTCRtpReceiver__remote_streams",
    # What aiortc's RTCP loop reads and sets (TransportReceiverReports reports in its place).
    "rtcp_ssrc": "_RTCRtpReceiver__rtcp_ssrc",
    "lsr": "_RTCRtpReceiver__lsr",
    "lsr_time": "_RTCRtpReceiver__lsr_time",
    "rtcp_started": "_RTCRtpReceiver__rtcp_started",
    "rtcp_exited": "_RTCRtpReceiver__rtcp_exited",
}
RECEIVER_METHODS: Final = {
    "_send_rtcp_pli": ("self", "media_ssrc"),
    "_set_rtcp_ssrc": ("self", "ssrc"),
    "_run_rtcp": ("self",),
}
#: Private attribute of RTCRtpTransceiver holding its sender.
TRANSCEIVER_SENDER_ATTRIBUTE: Final = "_RTCRtpTransceiver__sender"
#: Private method of RTCDtlsTransport that encrypts and sends RTP/RTCP.
DTLS_SEND_RTP_METHOD: Final = ("_send_rtp", ("self", "data"))
#: Private attributes of pylibsrtp.Session the SRTP protector uses (srtp_t*, buffer).
PYLIBSRTP_SESSION_ATTRIBUTES: Final = {"srtp": "_srtp", "cdata": "_cdata", "buffer": "_buffer"}
#: Private attributes of RTCDtlsTransport the synchronous send path reads.
DTLS_ATTRIBUTES: Final = ("_state", "_tx_srtp")
#: RTCIceTransport's aioice Connection, and the Connection's nominated pairs
#: (component -> CandidatePair with ``protocol.transport`` and ``remote_addr``).
ICE_CONNECTION_ATTRIBUTE: Final = "_connection"
ICE_NOMINATED_ATTRIBUTE: Final = "_nominated"
#: aioice function that lists the host addresses a Connection gathers on.
AIOICE_HOST_ADDRESSES_FUNCTION: Final = ("get_host_addresses", ("use_ipv4", "use_ipv6"))
#: aioice Connection methods wrapped to refuse checks from networks not allowed.
AIOICE_CONNECTION_METHODS: Final = {
    "gather_candidates": ("self",),
    "request_received": ("self", "message", "addr", "protocol"),
}


def selected_candidate_types(pc: Any) -> tuple[str, str] | None:
    """(local, remote) ICE candidate types of the pair a peer connection sends on.

    `host`, `srflx`, `prflx` or `relay`; None before a pair is nominated. aiortc's
    getStats() has no candidate-pair statistics, so this reads aioice's
    nominated pair (component 1) of the first transport.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport or transceiver.sender.transport
        if dtls is None:
            continue
        return _nominated_types(dtls)
    return None


def data_channel_candidate_types(pc: Any) -> tuple[str, str] | None:
    """As :func:`selected_candidate_types`, for a peer connection with data channels only."""
    sctp = pc.sctp
    return None if sctp is None else _nominated_types(sctp.transport)


def _nominated_types(dtls: RTCDtlsTransport) -> tuple[str, str] | None:
    connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE, None)
    nominated = getattr(connection, ICE_NOMINATED_ATTRIBUTE, None) or {}
    pair = nominated.get(1)
    if pair is None:
        return None
    remote = pair.remote_candidate
    if remote.type == "prflx" and connection is not None:
        # Checks often arrive before the trickled candidate they come from: aioice
        # then keeps a peer-reflexive one. The signalled candidate at the same
        # address, if one came since, says what it really is (a TURN relay...).
        for signalled in connection.remote_candidates:
            if (signalled.host, signalled.port) == (remote.host, remote.port):
                return (pair.local_candidate.type, signalled.type)
    return (pair.local_candidate.type, remote.type)


# --- Receive side: the packet tap ----------------------------------------------------


class JitterBufferLike(Protocol):
    """What RTCRtpReceiver calls on its jitter buffer (``add`` only)."""

    def add(self, packet: RtpPacket) -> tuple[bool, Any]:
        """Take one RTP packet; return (send PLI?, complete encoded frame or None)."""
        ...


def install_jitter_buffer(receiver: RTCRtpReceiver, replacement: JitterBufferLike) -> None:
    """Replace the receiver's jitter buffer so packets never reach its decoder.

    Must be called before the receiver starts (before the answer is applied);
    aiortc only creates the decoder input from what the jitter buffer returns.
    """
    name = RECEIVER_ATTRIBUTES["jitter_buffer"]
    current = getattr(receiver, name, None)
    if not isinstance(current, JitterBuffer) and current is not replacement:
        raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no jitter buffer at {name}")
    setattr(receiver, name, replacement)


def received_counts(receiver: RTCRtpReceiver) -> tuple[int, int]:
    """(packets expected, packets received) so far over the receiver's streams (RTP
    sequence numbers; aiortc counts them for its receiver reports). Their changes
    between two reads give the publisher's uplink loss."""
    streams = getattr(receiver, RECEIVER_ATTRIBUTES["remote_streams"], None)
    if not isinstance(streams, dict):
        return 0, 0
    expected = received = 0
    for stream in streams.values():
        expected += int(stream.packets_expected)
        received += int(stream.packets_received)
    return expected, received


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send an RTCP Picture Loss Indication for ``media_ssrc`` from this receiver."""
    await receiver._send_rtcp_pli(media_ssrc)


# --- Receive side: RTP handled in the datagram callback -------------------------------

#: Private attributes of RTCRtpReceiver instances the direct ingest reads per packet,
#: as in ``RTCRtpReceiver._handle_rtp_packet`` (whose steady state it repeats).
INGEST_RECEIVER_ATTRIBUTES: Final = {
    "enabled": "_enabled",
    "remote_bitrate_estimator": "_RTCRtpReceiver__remote_bitrate_estimator",
    "rtcp_ssrc": "_RTCRtpReceiver__rtcp_ssrc",
    "active_ssrc": "_RTCRtpReceiver__active_ssrc",
    "codecs": "_RTCRtpReceiver__codecs",
    "remote_streams": "_RTCRtpReceiver__remote_streams",
    "rtx_ssrc": "_RTCRtpReceiver__rtx_ssrc",
    "nack_generator": "_RTCRtpReceiver__nack_generator",
    "jitter_buffer": "_RTCRtpReceiver__jitter_buffer",
    "decoder_error": "_RTCRtpReceiver__decoder_error",
    "kind": "_RTCRtpReceiver__kind",
}
#: Private coroutine methods of RTCRtpReceiver the direct ingest schedules (RTCP out).
INGEST_RECEIVER_METHODS: Final = {
    "_send_rtcp": ("self", "packet"),
    "_send_rtcp_nack": ("self", "media_ssrc", "lost"),
    "_send_rtcp_pli": ("self", "media_ssrc"),
    "_handle_rtp_packet": ("self", "packet", "arrival_time_ms"),
}
#: Private attributes of RTCDtlsTransport the direct ingest reads per packet.
INGEST_DTLS_ATTRIBUTES: Final = {
    "state": "_state",
    "rx_srtp": "_rx_srtp",
    "router": "_rtp_router",
    "extensions_map": "_rtp_header_extensions_map",
    "rx_bytes": "_RTCDtlsTransport__rx_bytes",
    "rx_packets": "_RTCDtlsTransport__rx_packets",
}
#: RtpRouter's table SSRC -> RTCRtpReceiver (the load tools' cheap receive routes by it).
ROUTER_SSRC_TABLE_ATTRIBUTE: Final = "ssrc_table"
#: aioice Connection: its queue of received datagrams, and the method that fills it.
AIOICE_QUEUE_ATTRIBUTE: Final = "_queue"
AIOICE_DATA_RECEIVED_METHOD: Final = ("data_received", ("self", "data", "component"))
#: SHA-256 of the aiortc functions the direct ingest repeats (inspect.getsource):
#: when aiortc changes them, tests/media/test_aiortc_internals.py says so, and
#: DirectIngest must be compared with the new code.
INGEST_PORTED_SOURCES: Final = {
    "RTCRtpReceiver._handle_rtp_packet": (
        "4e54983d021a6336d80c29490f82f9a6dd531c0d3179b2daed818120c5ece238"
    ),
    "RTCDtlsTransport._recv_next": (
        "998076720c05aa13faadff2dfa337f6964c171fa6791789a72693e1480c74102"
    ),
    "RTCDtlsTransport._handle_rtp_data": (
        "5def9061cc3da1f67db719e43b0b1ee242688f231eb963cf2cb5d9696abfc9e2"
    ),
    "RTCDtlsTransport._handle_rtcp_data": (
        "5469e786d77b37b25e0a6ca5b7808166d0ddd0175842d8354225ee46a2ca8004"
    ),
    # The RTCP handlers the direct ingest runs outside a task, to their end: they must
    # not need one (no asyncio.timeout, no waiting in practice).
    "RTCRtpSender._handle_rtcp_packet": (
        "a4ee4c7355f8de7a67ae75215d25d2d34931931a33b8ad2ce89ba2d9a24fc704"
    ),
    "RTCRtpReceiver._handle_rtcp_packet": (
        "ec9f46214c3495b24a29f83538540c9e3ec788db183e3dad2078877549b4788c"
    ),
    # Ported as rtcp_recipients (the RTCP packet's senders and receivers).
    "RtpRouter.route_rtcp": "199bd7e279f1945a4dc54943b22193bc9ed4929dd46ff7ca62ddf6d1791fa0e2",
    # HookedRtpSender.getStats adds the last report block's statistics before it.
    "RTCRtpSender.getStats": "5da0142919c095e396d6747a36a78766865bc3a103f5409547b871b9e11f932a",
}

#: SHA-256 of what the compiled ingest (server/media/_ingest.c) repeats, beyond the
#: functions above ("module:qualified name"; a class: its whole source, for the REMB
#: estimator ported in _ingest_estimator.h), and of what the compiled fan-out reads
#: in place of a call (asyncio's is_closing). A change fails
#: tests/media/test_aiortc_internals.py until the C is compared with it.
COMPILED_INGEST_PORTED_SOURCES: Final = {
    "aiortc.rtp:RtpPacket.parse": (
        "22109861dfce7babb7351ee06fd991d25c9da43d5d841febcab5ad3345dbb336"
    ),
    "aiortc.rtp:HeaderExtensionsMap.get": (
        "7abeb1022f1d6bc1b4859976d1a0accf1f267e195f3db6b339f7f2701cc9322e"
    ),
    "aiortc.rtp:unpack_header_extensions": (
        "d78a8585d2b6ebc5624074c38a71b7e5d6916cf7d437cc0c5a0329728540ce27"
    ),
    # The load tool's TalliedStatistics keeps these fields in a Tally (receiver_stats.py).
    "aiortc.rtcrtpreceiver:StreamStatistics.__init__": (
        "e2a86adef9a99d9060c689b27e53dd9a2a4cb698728e84bd1f62ca495625a7df"
    ),
    "aiortc.rtcrtpreceiver:StreamStatistics.add": (
        "d157b75e24b7ff53119b8973fa8311e00d329655d5e47be10b166d892a3300e1"
    ),
    "aiortc.rtcrtpreceiver:NackGenerator.add": (
        "ec50ec86d128c3512a7ec613aa82f30add6c2d9dbd89bf6f67956c27658dc222"
    ),
    "aiortc.codecs.vpx:VpxPayloadDescriptor.parse": (
        "79619961962f23e6bf2849f594dbb0f15d2d9541d0c438107e2515fb37d57c11"
    ),
    "aiortc.rtcdtlstransport:RtpRouter.route_rtp": (
        "e4bcc08d181438b785e79c61fd8a803f2b9ed6163efd9b317d120d672d91863d"
    ),
    "asyncio.selector_events:_SelectorDatagramTransport._read_ready": (
        "a94e5a17ae9744963a65fc0b639ab0cdc4ac50d88a9b178202a864eed78f3309"
    ),
    "asyncio.selector_events:_SelectorTransport.is_closing": (
        "fc304726666981e20cd4491bc9d000989893a9bee4d8172a8197db622dbc7dfb"
    ),
    # server/media/event_loop.py: the wait that reads inline returns as EpollSelector's
    # select does; it runs a reader as a Handle does, and ends the wait on the loop's work
    # as _run_once finds it (ready callbacks, timers).
    "selectors:EpollSelector.select": (
        "a0a73b27d047835072262ed9f4a992dd1d4a2136d58fb1e4945743b3af61b2b0"
    ),
    "asyncio.events:Handle._run": (
        "53f60446b88369033fae298e3b5ef505d35f18169df301eb646338d2c01382e8"
    ),
    "asyncio.base_events:BaseEventLoop._run_once": (
        "26970ce6b0d67ef53ed648e7f99fa1755c131bcfcb34ca4b6b3d6416741a1a2d"
    ),
    "aioice.ice:StunProtocol.datagram_received": (
        "ff4c8b910d45fb3a9e50c4391fe5cbaba33dcba669fea9e847e19a5c99b9bfbb"
    ),
    "aiortc.rate:RemoteBitrateEstimator": (
        "287ad89d380234e976f446c3a9e7b131f48a2d6df7cd6559976f82b99cb4ebc1"
    ),
    "aiortc.rate:AimdRateControl": (
        "ee1addbf438d8155d3f117e16bfa406bacc113356695c1324555363ab99eba32"
    ),
    "aiortc.rate:InterArrival": (
        "6a4f6ea6e1786add9210d3d006d803c6dca74967857950e984576379254d72db"
    ),
    "aiortc.rate:OveruseDetector": (
        "de2b751f712690aa901ecb50a77e37f782dceaac5af4eba68cd82882eefa90a2"
    ),
    "aiortc.rate:OveruseEstimator": (
        "1b468219a69d64a8a947464852f04ebe1f669e33f4978b51d26166aac82bf1e1"
    ),
    "aiortc.rate:RateCounter": ("07a0d63e5d1a328944df287e6095320c0513b376a1ccc39d5f9ddde5ead990e7"),
    "aiortc.rate:TimestampGroup": (
        "1efc2694badae1eba835248faba52a2de5aff91ad48930476e3f70a640399a43"
    ),
    # The receiver's "last packet from this source" time, built in C (utc_now).
    "aiortc.clock:current_datetime": (
        "16e480606306c8a460186b11cf32d1e893ddbe87f2d232c531f3d60b05c00f54"
    ),
    # Ours: the compiled forwarding feeds the speaker detector's meters (meter_observe).
    "server.media.active_speaker:AudioLevelMeter.observe": (
        "c852105ae752bdc221af24c4f0f1b7ac476a8b1b90c6b28dd680f1c684ac341a"
    ),
    # Ours: the load tool's receivers are counted in C (_ingest_tally.h, tally_count).
    "server.loadtest.receiver_stats:Tally.count": (
        "d9007f91a7e1cbbf3ab1d129dabd68dacf0159e6061f412071ca1826f4ed878c"
    ),
    "server.loadtest.receiver_stats:Tally._count_sequence": (
        "5c7d8f67d691375c32ddafd3f9d93aac4b47c5ab1916d10d028f88eaa7637415"
    ),
    "server.loadtest.receiver_stats:Tally._frame": (
        "0624bc0ea57b58e734e671dc03e5e3e15aef712db2742ab5f3c7485d65599064"
    ),
}
#: asyncio's datagram transport whose reader callback the compiled ingest replaces, the
#: transport's attributes it reads, and the event loop's method that sets a reader.
_SELECTOR_DATAGRAM_TRANSPORT: Final = (
    asyncio.selector_events._SelectorDatagramTransport  # type: ignore[attr-defined]
)
ASYNCIO_TRANSPORT_ATTRIBUTES: Final = {
    "loop": "_loop",
    "fd": "_sock_fd",
    "conn_lost": "_conn_lost",
    "protocol": "_protocol",
}
ASYNCIO_LOOP_ADD_READER: Final = "_add_reader"
#: The StunProtocol attribute the compiled ingest's entry replaces per protocol.
AIOICE_DATAGRAM_RECEIVED_METHOD: Final = "datagram_received"
#: aioice Connection's protocols (one per local candidate).
AIOICE_PROTOCOLS_ATTRIBUTE: Final = "_protocols"

#: The longest datagram pylibsrtp can unprotect (its session buffer).
_SRTP_MAX_PACKET: Final = 1500
#: Milliseconds from the NTP epoch (1900) to the Unix epoch: aiortc's clock counts from 1900.
_NTP_UNIX_OFFSET_MS: Final = 2_208_988_800_000
#: How stale the "last packet from this source" time (getSynchronizationSources) may be.
_SOURCE_TIME_RESOLUTION_MS: Final = 10


def is_rtp_datagram(data: bytes) -> bool:
    """An (S)RTP packet, by RFC 7983's first byte and aiortc's RTCP test on the second."""
    return len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 208


def is_rtcp_datagram(data: bytes) -> bool:
    """An (S)RTCP packet (as :func:`is_rtp_datagram`, second byte 192-208)."""
    return len(data) >= 8 and 127 < data[0] < 192 and 192 <= data[1] <= 208


class SrtpUnprotector:
    """``pylibsrtp.Session.unprotect`` without its per-call allocation and checks.

    As :class:`SrtpProtector`: libsrtp's ``srtp_unprotect`` is called on the
    session's own buffer with a length cell allocated once. One per session;
    not reentrant (the event loop is single-threaded).
    """

    def __init__(self, session: SrtpSession, *, rtcp: bool = False) -> None:
        self.session = session  # keeps libsrtp's context alive (see SrtpProtector)
        self._srtp = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["srtp"])[0]
        self._cdata = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["cdata"])
        self._buffer = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["buffer"])
        self._max_length = len(self._buffer)
        self._length = srtp_ffi.new("int *")
        self._unprotect = srtp_lib.srtp_unprotect_rtcp if rtcp else srtp_lib.srtp_unprotect

    def unprotect(self, data: bytes) -> bytes:
        """The RTP (or, made with ``rtcp=True``, RTCP) packet in the SRTP (SRTCP) packet
        ``data`` (pylibsrtp.Error if not authentic)."""
        size = len(data)
        if size > self._max_length:
            raise pylibsrtp.Error("packet is too long")
        buffer = self._buffer
        buffer[0:size] = data
        length = self._length
        length[0] = size
        status = self._unprotect(self._srtp, self._cdata, length)
        if status:
            raise pylibsrtp.Error(f"srtp_unprotect failed: {status}")
        packet: bytes = buffer[0 : length[0]]
        return packet

    def fast_path(self) -> dict[str, Any]:
        """``compiled_ingest.Path.set_srtp()``'s arguments: the addresses of libsrtp's
        ``srtp_unprotect`` and of the session's ``srtp_t``, and the session (keeps it alive)."""
        unprotect = srtp_ffi.addressof(srtp_lib, "srtp_unprotect")
        return {
            "session": self.session,
            "unprotect": int(srtp_ffi.cast("uintptr_t", unprotect)),
            "srtp": int(srtp_ffi.cast("uintptr_t", self._srtp)),
        }


class DirectIngest:
    """Takes a connection's SRTP-protected RTP and RTCP in aioice's datagram callback.

    aiortc receives each datagram through aioice's queue: the datagram callback
    queues it, and the DTLS transport's receive task wakes up (one more event
    loop iteration), awaits through four coroutine frames, SRTP-unprotects it,
    parses it and awaits the receiver's ``_handle_rtp_packet``. Installed on the
    aioice connection (``data_received``), this does the same work for RTP in
    the callback itself, synchronously: unprotect, parse, route, then what
    ``_handle_rtp_packet`` does (REMB estimator, sources, statistics for the
    receiver reports, RTX unwrapping, NACK generator, payload check, the
    jitter buffer, i.e. our packet tap) on the receiver's own state. The RTCP
    that this may send (REMB, NACK, PLI) is sent from a task, as it never waits
    in practice anyway. SRTCP (a subscriber's reports and feedback, a
    publisher's sender reports) is unprotected, parsed and routed the same way,
    each RTCP packet's handlers run to their end in the callback.

    Everything else takes aiortc's path, unchanged: DTLS, any datagram
    while the queue is not empty (so that the order of arrival holds), and
    anything before the DTLS transport is connected. An RTP packet routed to a
    receiver this was not told about goes to that receiver's own handler.
    Nothing raised here may reach asyncio (it would close the socket, i.e. the
    publisher's connection): a failure is logged and the packet dropped.
    """

    def __init__(
        self, dtls: RTCDtlsTransport, receivers: list[RTCRtpReceiver], *, compiled: bool = False
    ) -> None:
        self._dtls = dtls
        self._dtls_vars = vars(dtls)
        self._connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE)
        self._queue: asyncio.Queue[Any] = getattr(self._connection, AIOICE_QUEUE_ATTRIBUTE)
        self._queued = self._connection.data_received  # aiortc's path
        # receiver -> its attributes (the instance dict: read per packet, as they change)
        self._receivers: dict[Any, dict[str, Any]] = {r: vars(r) for r in receivers}
        self._unprotector: SrtpUnprotector | None = None
        self._rtcp_unprotector: SrtpUnprotector | None = None
        # aiortc's clock makes a timezone-aware datetime per call (two per packet,
        # the costliest step after the REMB estimator): the arrival time is read
        # from time_ns() instead (same epoch, same milliseconds), and the time
        # each source was last seen is a datetime made at most every 10 ms.
        self._source_time = aiortc_clock.current_datetime()
        self._source_time_ms = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Packets dropped because of a failure.
        self.errors = 0
        #: RTCP packets (of compound ones) handled here, and handlers or RTCP sends
        #: (REMB, NACK, PLI) that had to finish in a task (they waited for something).
        self.rtcp_packets = 0
        self.rtcp_deferred = 0
        # What the Python path routed and dropped (``packets`` and ``dropped`` add the
        # compiled path's counts).
        self._python_packets = 0
        self._python_dropped = 0
        #: The compiled steady state (server/media/_ingest.c), or None: Python does it all.
        self.compiled: Any = None
        if compiled and compiled_ingest is not None:
            self.compiled = compiled_ingest.Path(
                ingest=self,
                dtls_vars=self._dtls_vars,
                queue_items=self._queue._queue,
                receivers=self._receivers,
                connected=_DTLS_STATE_CONNECTED,
                queued=self._queued,
            )
            for receiver in receivers:
                self._use_compiled_estimator(receiver)

    @property
    def packets(self) -> int:
        """RTP packets routed to a receiver this ingest was told about."""
        return self._python_packets + (self.compiled.packets if self.compiled is not None else 0)

    @property
    def dropped(self) -> int:
        """Datagrams dropped before aiortc's path (empty, or too long to be SRTP)."""
        return self._python_dropped + (self.compiled.dropped if self.compiled is not None else 0)

    def _use_compiled_estimator(self, receiver: RTCRtpReceiver) -> None:
        # The receiver's REMB estimator becomes the compiled port (same answers,
        # tests/media/test_compiled_estimator.py), so that both paths feed one estimator.
        # Only before its first packet: the state is not carried over.
        state = self._receivers[receiver]
        key = INGEST_RECEIVER_ATTRIBUTES["remote_bitrate_estimator"]
        estimator = state.get(key)
        if isinstance(estimator, RemoteBitrateEstimator) and not estimator.ssrcs:
            state[key] = compiled_ingest.Estimator()

    @classmethod
    def install(
        cls, dtls: RTCDtlsTransport, receivers: list[RTCRtpReceiver], *, compiled: bool = True
    ) -> DirectIngest:
        """Install on the DTLS transport's aioice connection (again: adds ``receivers``).

        With ``compiled`` (and the extension built), the steady state runs in C
        (:attr:`compiled`); otherwise all of it in Python (the reference). The
        receivers' reports go out with their transport's (:class:`TransportReceiverReports`)
        once they start receiving.
        """
        for receiver in receivers:
            # receive() starts the RTCP task after DTLS; an instance attribute wins.
            receiver._run_rtcp = functools.partial(report_with_transport, receiver)  # type: ignore[method-assign]
        connection = getattr(dtls.transport, ICE_CONNECTION_ATTRIBUTE)
        current = vars(connection).get(AIOICE_DATA_RECEIVED_METHOD[0])
        owner = getattr(current, "__self__", None)
        owner = getattr(owner, "ingest", owner)  # the compiled path's owner
        if isinstance(owner, DirectIngest):
            for receiver in receivers:
                if receiver not in owner._receivers:
                    owner._receivers[receiver] = vars(receiver)
                    if owner.compiled is not None:
                        owner._use_compiled_estimator(receiver)
            return owner
        ingest = cls(dtls, receivers, compiled=compiled)
        if ingest.compiled is None:
            setattr(connection, AIOICE_DATA_RECEIVED_METHOD[0], ingest.data_received)
            return ingest
        setattr(connection, AIOICE_DATA_RECEIVED_METHOD[0], ingest.compiled.receive)
        # RTP and RTCP skip aioice's attempt to parse every datagram as STUN (an
        # exception per packet): each protocol's datagram_received sends them to the
        # path directly, as aioice would after that attempt (compiled_ingest.Entry).
        for protocol in getattr(connection, AIOICE_PROTOCOLS_ATTRIBUTE):
            method = getattr(protocol, AIOICE_DATAGRAM_RECEIVED_METHOD)
            if not isinstance(method, compiled_ingest.Entry):
                entry = compiled_ingest.Entry(
                    path=ingest.compiled,
                    fallback=method,
                    component=protocol.local_candidate.component,
                )
                setattr(protocol, AIOICE_DATAGRAM_RECEIVED_METHOD, entry)
                _install_reader(protocol, entry)
        return ingest

    def data_received(self, data: bytes, component: int) -> None:
        """aioice's callback for a datagram that is not STUN."""
        if not data or (127 < data[0] < 192 and len(data) > _SRTP_MAX_PACKET):
            # aiortc's receive task fails on these (``data[0]``; pylibsrtp's
            # "packet is too long" ValueError) and closes the connection: one
            # stray datagram would cut the publisher off. Nothing valid is lost:
            # pylibsrtp cannot unprotect a longer packet.
            self._python_dropped += 1
            return
        dtls = self._dtls_vars
        if (
            component == 1
            and self._queue.empty()
            and dtls["_state"] is _DTLS_STATE_CONNECTED
            and dtls["_rx_srtp"] is not None
        ):
            if is_rtp_datagram(data):
                handle = self._handle_rtp
            elif is_rtcp_datagram(data):
                handle = self._handle_rtcp
            else:
                handle = None
            if handle is not None:
                try:
                    handle(data)
                except Exception:
                    self._failed()
                return
        self._queued(data, component)

    def _failed(self) -> None:
        self.errors += 1
        if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th ... time
            logger.exception("direct ingest failed (%d times)", self.errors)

    def _handle_rtcp(self, data: bytes) -> None:
        # Timed for yitang_rtcp_handling_seconds: nothing is forwarded meanwhile.
        started = time.perf_counter()
        try:
            self._handle_rtcp_compound(data)
        finally:
            rtcp_handling.observe(time.perf_counter() - started)

    def _handle_rtcp_compound(self, data: bytes) -> None:
        # RTCDtlsTransport._recv_next and _handle_rtcp_data: each RTCP packet of the
        # compound goes to the senders and receivers it is for, in order. Their
        # handlers are coroutines that, in practice, never wait (a NACK's
        # retransmission is sent at once); each runs to its end here, or, should it
        # wait after all, finishes in a task.
        dtls = self._dtls_vars
        dtls["_RTCDtlsTransport__rx_bytes"] += len(data)
        dtls["_RTCDtlsTransport__rx_packets"] += 1
        unprotector = self._rtcp_unprotector
        if unprotector is None or unprotector.session is not dtls["_rx_srtp"]:
            unprotector = self._rtcp_unprotector = SrtpUnprotector(dtls["_rx_srtp"], rtcp=True)
        try:
            data = unprotector.unprotect(data)
        except pylibsrtp.Error:
            return  # not authentic or replayed: as aiortc, dropped
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        router = dtls["_rtp_router"]
        for packet in packets:
            for recipient in rtcp_recipients(router, packet):
                self.rtcp_packets += 1
                self._run_now(recipient._handle_rtcp_packet(packet))

    def _run_now(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # An RTCP handler (aiortc's coroutine), to its end here (run_in_place).
        try:
            if not run_in_place(coroutine, self._spawn):
                self.rtcp_deferred += 1
        except Exception:
            self._failed()

    def _handle_rtp(self, data: bytes) -> None:
        # RTCDtlsTransport._recv_next and _handle_rtp_data
        dtls = self._dtls_vars
        dtls["_RTCDtlsTransport__rx_bytes"] += len(data)
        dtls["_RTCDtlsTransport__rx_packets"] += 1
        arrival_time_ms = time.time_ns() // 1_000_000 + _NTP_UNIX_OFFSET_MS  # clock.current_ms()
        unprotector = self._unprotector
        if unprotector is None or unprotector.session is not dtls["_rx_srtp"]:
            unprotector = self._unprotector = SrtpUnprotector(dtls["_rx_srtp"])
            if self.compiled is not None:
                self.compiled.set_srtp(**unprotector.fast_path())
        try:
            data = unprotector.unprotect(data)
        except pylibsrtp.Error:
            return  # not authentic, replayed, or not RTP: as aiortc, dropped
        self._handle_decrypted(data, arrival_time_ms)

    def _handle_decrypted(self, data: bytes, arrival_time_ms: int) -> None:
        # After unprotect (the compiled path hands over here what it does not parse).
        dtls = self._dtls_vars
        try:
            packet = RtpPacket.parse(data, dtls["_rtp_header_extensions_map"])
        except ValueError:
            return
        receiver = dtls["_rtp_router"].route_rtp(packet)
        if receiver is None:
            return
        state = self._receivers.get(receiver)
        if state is None:
            self._spawn(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms))
            return
        self._python_packets += 1
        self._handle_packet(receiver, state, packet, arrival_time_ms)

    def _handle_packet(
        self, receiver: Any, state: dict[str, Any], packet: RtpPacket, arrival_time_ms: int
    ) -> None:
        # RTCRtpReceiver._handle_rtp_packet, with its awaited RTCP sends as tasks
        # and without keeping the depayloaded payload (only the decoder reads it).
        if not state["_enabled"]:
            return
        estimator = state["_RTCRtpReceiver__remote_bitrate_estimator"]
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if remb is not None:
                self._send_remb(receiver, remb)
        if arrival_time_ms - self._source_time_ms >= _SOURCE_TIME_RESOLUTION_MS:
            self._source_time = aiortc_clock.current_datetime()
            self._source_time_ms = arrival_time_ms
        state["_RTCRtpReceiver__active_ssrc"][packet.ssrc] = self._source_time
        codecs = state["_RTCRtpReceiver__codecs"]
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = state["_RTCRtpReceiver__remote_streams"]
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if is_rtx(codec):
            original_ssrc = state["_RTCRtpReceiver__rtx_ssrc"].get(packet.ssrc)
            if original_ssrc is None:
                return
            apt = codec.parameters.get("apt")
            if len(packet.payload) < 2 or not isinstance(apt, int) or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = codecs[apt]
        nack_generator = state["_RTCRtpReceiver__nack_generator"]
        if nack_generator is not None and nack_generator.add(packet):
            self._send_now(receiver._send_rtcp_nack(packet.ssrc, sorted(nack_generator.missing)))
        if packet.payload:
            try:
                depayload(codec, packet.payload)  # aiortc drops what its depayloader refuses
            except ValueError:
                return
        pli_flag, _ = state["_RTCRtpReceiver__jitter_buffer"].add(packet)
        self._after_jitter(receiver, state, packet, pli_flag)

    def _send_remb(self, receiver: RTCRtpReceiver, remb: tuple[int, list[int]]) -> None:
        # The REMB the estimator says is due.
        rtcp_ssrc = self._receivers[receiver]["_RTCRtpReceiver__rtcp_ssrc"]
        if rtcp_ssrc is not None:
            fci = pack_remb_fci(*remb)
            feedback = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
            self._send_now(receiver._send_rtcp(feedback))

    def _after_jitter(
        self, receiver: RTCRtpReceiver, state: dict[str, Any], packet: RtpPacket, pli_flag: bool
    ) -> None:
        # The end of _handle_rtp_packet: a PLI when the jitter buffer or the decoder asks.
        decoder_error = state["_RTCRtpReceiver__decoder_error"]
        if decoder_error.is_set():
            decoder_error.clear()
            if state["_RTCRtpReceiver__kind"] == "video":
                # Report the lost picture data to the sender (RFC 4585 section 6.3.1.1).
                pli_flag = True
        if pli_flag:
            self._send_now(receiver._send_rtcp_pli(packet.ssrc))

    def _report_failure(self, exc: BaseException | None) -> None:
        # The compiled path's failures: counted and logged as _failed() does.
        self.errors += 1
        if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th ... time
            logger.error("direct ingest failed (%d times)", self.errors, exc_info=exc)

    def _send_now(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # An RTCP send (aiortc's coroutine), to its end here (run_in_place): nothing in it
        # waits (the DTLS transport protects, the ICE connection sends), where a task
        # would cost two more turns of the event loop per send.
        try:
            if not run_in_place(coroutine, self._spawn):
                self.rtcp_deferred += 1
        except Exception as exc:
            logger.debug("direct ingest: RTCP send failed: %s", exc)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("direct ingest: RTCP send failed: %s", task.exception())


def _install_reader(protocol: Any, entry: Any) -> None:
    """Read ``protocol``'s socket with ``compiled_ingest.Reader`` instead of asyncio's
    ``_read_ready`` (a Python frame and an address string per datagram), where the
    transport is asyncio's selector one (anything else keeps its own reader)."""
    transport = protocol.transport
    if type(transport) is not _SELECTOR_DATAGRAM_TRANSPORT:
        return
    loop = getattr(transport, ASYNCIO_TRANSPORT_ATTRIBUTES["loop"])
    fd = getattr(transport, ASYNCIO_TRANSPORT_ATTRIBUTES["fd"])
    if getattr(transport, ASYNCIO_TRANSPORT_ATTRIBUTES["conn_lost"]) or transport.is_closing():
        return
    reader = compiled_ingest.Reader(entry=entry, transport=transport, fd=fd)
    getattr(loop, ASYNCIO_LOOP_ADD_READER)(fd, reader)


async def _finish_coroutine(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Finish, in a task, a coroutine that was started with ``send(None)`` outside one and
    then waited: ``waiting_on`` is what it yielded (asyncio's protocol: the future it
    awaits, or None for a bare yield). As a task would, wait for it, then resume the
    coroutine (which reads the future's result itself), until it returns."""
    while True:
        if waiting_on is None:
            await asyncio.sleep(0)
        else:
            await asyncio.wait([waiting_on])
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return


def run_in_place(
    coroutine: Coroutine[Any, Any, None], spawn: Callable[[Coroutine[Any, Any, None]], None]
) -> bool:
    """Run ``coroutine`` to its end now, outside a task: aiortc's RTCP handlers and sends
    are coroutines that do not wait in practice, and a task costs turns of the event loop.
    Should it wait after all, ``spawn`` gets the rest to run in a task
    (:func:`_finish_coroutine`). Its exception propagates. True if it ended here."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return True
    spawn(_finish_coroutine(coroutine, waiting_on))
    return False


# --- Send side: a sender whose RTP loop we own ---------------------------------------

_DTLS_STATE_CONNECTED: Final = DtlsState.CONNECTED


#: Nanoseconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_UNIX_OFFSET_NS: Final = 2_208_988_800 * 1_000_000_000


def ntp_time() -> int:
    """Now as a 64-bit NTP timestamp: ``aiortc.clock.current_ntp_time()`` without datetimes.

    Same epoch and format (32.32 fixed point seconds since 1900), from one
    ``time.time_ns()`` read: this runs once per forwarded packet per subscriber.
    """
    return ((time.time_ns() + _NTP_UNIX_OFFSET_NS) << 32) // 1_000_000_000


class RtpOutput(Protocol):
    """Where a channel's RTP goes (a connected transport, or a test's recorder)."""

    def send(self, header: bytes | bytearray, payload: bytes) -> int:
        """Encrypt and send the packet ``header + payload`` now.

        Returns the bytes the socket still buffers; raises ConnectionError when
        the transport is closed.
        """
        ...

    def buffered_bytes(self) -> int:
        """Bytes waiting in the socket's buffer (sent later by asyncio)."""
        ...


class SrtpProtector:
    """SRTP-protects packets given as header + payload, with pylibsrtp's own buffer.

    ``pylibsrtp.Session.protect`` allocates a length cell and copies the packet
    twice on each call; this calls libsrtp's ``srtp_protect`` on the session's
    buffer directly, writing header and payload straight into it (no
    concatenated copy). One protector per session; not reentrant, which the
    single-threaded event loop guarantees.
    """

    def __init__(self, session: SrtpSession) -> None:
        # Holding the session keeps libsrtp's context alive: pylibsrtp frees it
        # (ffi.gc) when the Session object goes, and the raw pointers below would dangle.
        self._session = session
        self._srtp = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["srtp"])[0]
        self._cdata = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["cdata"])
        self._buffer = getattr(session, PYLIBSRTP_SESSION_ATTRIBUTES["buffer"])
        self._max_length = len(self._buffer) - pylibsrtp.SRTP_MAX_TRAILER_LEN
        self._length = srtp_ffi.new("int *")
        self._protect = srtp_lib.srtp_protect

    def protect(self, header: bytes | bytearray, payload: bytes) -> bytes:
        """The SRTP packet for ``header + payload`` (ValueError if too long)."""
        size = len(header)
        end = size + len(payload)
        if end > self._max_length:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:size] = header
        buffer[size:end] = payload
        length = self._length
        length[0] = end
        status = self._protect(self._srtp, self._cdata, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed: {status}")
        protected: bytes = buffer[0 : length[0]]
        return protected

    def fast_path(self) -> dict[str, Any]:
        """What the compiled fan-out needs to call ``srtp_protect`` on this session itself.

        The addresses of libsrtp's ``srtp_protect`` (from pylibsrtp's cffi module)
        and of the session's ``srtp_t``, with the session to keep it alive.
        """
        protect = srtp_ffi.addressof(srtp_lib, "srtp_protect")
        return {
            "protect": int(srtp_ffi.cast("uintptr_t", protect)),
            "srtp": int(srtp_ffi.cast("uintptr_t", self._srtp)),
            "session": self._session,
            "max_length": self._max_length,
        }


def protector_for(session: Any) -> SrtpProtector | OutboundSrtpProtector:
    """The header + payload protector of a transport's outbound SRTP session."""
    if outbound_srtp.available() and isinstance(session, outbound_srtp.OutboundSrtpSession):
        return OutboundSrtpProtector(session)
    return SrtpProtector(session)


class DtlsRtpOutput:
    """The synchronous send path of a connected DTLS transport: SRTP protect + ``sendto``.

    aiortc's ``_send_rtp`` does the same in three awaits (DTLS transport, ICE
    transport, aioice connection) that never actually wait; called once per
    packet per subscriber, those coroutine frames cost more than the
    encryption. The ICE pair is looked up on every call because aioice clears
    it on close.
    """

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._dtls = transport
        ice_connection = getattr(transport.transport, ICE_CONNECTION_ATTRIBUTE)
        self._nominated: dict[int, Any] = getattr(ice_connection, ICE_NOMINATED_ATTRIBUTE)
        self._protector: SrtpProtector | OutboundSrtpProtector | None = None
        # The nominated pair last seen, with its socket and remote address (a
        # property that builds a new tuple on each read).
        self._pair: Any = None
        self._socket: Any = None  # asyncio datagram transport (get_write_buffer_size)
        self._buffered: Callable[[], int] = _nothing_buffered
        self._remote_addr: tuple[str, int] = ("", 0)

    def send(self, header: bytes | bytearray, payload: bytes) -> int:
        """SRTP-protect and send one RTP packet (see :class:`RtpOutput`)."""
        dtls = self._dtls
        if dtls._state is not _DTLS_STATE_CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = self._nominated.get(1)
        if pair is not self._pair:
            if pair is None:
                raise ConnectionError("Cannot send data, not connected")
            self._pair = pair
            self._socket = pair.protocol.transport
            # A client's pair through a TURN relay sends on aioice's TurnTransport,
            # which buffers nothing of its own (a node's pairs are its host sockets).
            self._buffered = getattr(self._socket, "get_write_buffer_size", _nothing_buffered)
            self._remote_addr = pair.remote_addr
            # The SRTP session exists once DTLS is connected (checked above): ours for
            # GCM (server/media/outbound_srtp.py), else libsrtp's.
            self._protector = protector_for(dtls._tx_srtp)
        socket = self._socket
        protector = self._protector
        assert protector is not None
        socket.sendto(protector.protect(header, payload), self._remote_addr)
        # Non-zero only when the kernel refused a datagram (EAGAIN) and asyncio
        # keeps it for later: the one place where a send "would block".
        return self._buffered()

    def buffered_bytes(self) -> int:
        """Bytes asyncio holds for the selected ICE pair's socket."""
        return self._buffered()

    def fast_path(self) -> dict[str, Any] | None:
        """``CompiledStream.connect()``'s arguments for the current pair (None: not sending yet).

        The compiled fan-out checks what :meth:`send` checks before each packet
        (DTLS state, the nominated pair, the socket not closing) and hands the
        packet back to Python when one fails.
        """
        if self._pair is None or self._protector is None or self._socket is None:
            return None
        sock = self._socket.get_extra_info("socket")
        if sock is None:
            return None
        return {
            **self._protector.fast_path(),
            "transport": self._socket,
            "fd": sock.fileno(),
            "host": self._remote_addr[0],
            "port": self._remote_addr[1],
            "dtls": self._dtls,
            "dtls_connected": _DTLS_STATE_CONNECTED,
            "nominated": self._nominated,
            "pair": self._pair,
        }


_NOT_TRIED: Final = object()


def _nothing_buffered() -> int:
    return 0


class SendCounters:
    """A channel's sender-report counters, when no compiled stream holds them."""

    __slots__ = ("last_ntp_time", "last_rtp_timestamp", "octets_sent", "packets_sent")

    def __init__(self) -> None:
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_ntp_time = 0
        self.last_rtp_timestamp = 0


def nack_negotiated(codec: RTCRtpCodecParameters) -> bool:
    """Whether the receiver of ``codec`` may NACK its packets (RFC 4585 generic NACK:
    feedback ``nack`` with no parameter; ``nack pli`` is a keyframe request)."""
    return any(fb.type == "nack" and not fb.parameter for fb in codec.rtcpFeedback)


class RtpSendChannel:
    """Sends RTP packets through an aiortc sender's transport, synchronously.

    Keeps what aiortc's own RTP loop would keep, at the lowest per-packet cost:
    the retransmission history (:mod:`server.media.sent_history`: header and
    payload, parsed into an ``RtpPacket`` only when a subscriber NACKs one, so
    that aiortc's ``_retransmit`` answers it, with RTX when negotiated) and the
    sender-report counters as plain integers, which :class:`HookedRtpSender`
    exposes to aiortc's RTCP loop when it builds a report (once per report
    interval, not per packet).
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        codec: RTCRtpCodecParameters,
        output: RtpOutput | None = None,
    ) -> None:
        self._sender = sender
        self.payload_type: int = codec.payloadType or 0
        self.clock_rate: int = codec.clockRate
        self.mid: str | None = getattr(sender, SENDER_ATTRIBUTES["mid"])
        self.ssrc = sender_ssrc(sender)
        self._history: dict[int, RtpPacket] = getattr(sender, SENDER_ATTRIBUTES["rtp_history"])
        self.extensions_map: HeaderExtensionsMap = getattr(
            sender, SENDER_ATTRIBUTES["header_extensions_map"]
        )
        self._output = output
        #: The packets sent (the NACK history; the compiled stream writes to it too).
        #: Their numbers only where the receiver cannot NACK them (sent_history.py).
        self._sent: SentHistoryLike = new_sent_history(packets=nack_negotiated(codec))
        #: Where the counters live: here, or in the compiled stream (see attach_stream).
        self._counters: SendCounters | CompiledStream = SendCounters()
        self._stream: CompiledStream | None = None
        # The output target the compiled stream was last connected to (or tried).
        self._fast_tried: object = _NOT_TRIED

    # Sender-report counters; properties so that the compiled stream can hold them.

    @property
    def packets_sent(self) -> int:
        """Packets sent."""
        return self._counters.packets_sent

    @packets_sent.setter
    def packets_sent(self, value: int) -> None:
        self._counters.packets_sent = value

    @property
    def octets_sent(self) -> int:
        """Payload octets sent (what RTCP sender reports count)."""
        return self._counters.octets_sent

    @octets_sent.setter
    def octets_sent(self, value: int) -> None:
        self._counters.octets_sent = value

    @property
    def last_ntp_time(self) -> int:
        """NTP time of the newest packet sent (with last_rtp_timestamp, a sender report's pair)."""
        return self._counters.last_ntp_time

    @last_ntp_time.setter
    def last_ntp_time(self, value: int) -> None:
        self._counters.last_ntp_time = value

    @property
    def last_rtp_timestamp(self) -> int:
        """RTP timestamp of the newest packet sent."""
        return self._counters.last_rtp_timestamp

    @last_rtp_timestamp.setter
    def last_rtp_timestamp(self, value: int) -> None:
        self._counters.last_rtp_timestamp = value

    def attach_stream(self, stream: CompiledStream) -> None:
        """Share the history and counters with the compiled fan-out's stream.

        Packets sent by either path then land in one history and one set of
        counters. The stream is connected to the output after the first packet
        this channel sends (when the transport is up).
        """
        for name in ("packets_sent", "octets_sent", "last_ntp_time", "last_rtp_timestamp"):
            setattr(stream, name, getattr(self._counters, name))
        # Compiled wherever compiled streams exist (new_sent_history); C checks it too.
        stream.set_history(self._sent)  # type: ignore[arg-type]
        self._counters = stream
        self._stream = stream

    def clear(self) -> None:
        """Drop the retransmission history (the sender will not send again)."""
        self._history.clear()
        self._sent.clear()  # in place: the compiled stream writes here
        if self._stream is not None:
            self._stream.disconnect()

    def send(self, header: bytes, payload: bytes) -> int:
        """Send one packet now; return the bytes the socket still buffers.

        Raises ConnectionError when the transport is closed. The caller sets
        :attr:`last_ntp_time` / :attr:`last_rtp_timestamp` (it has both at hand).
        """
        output = self._output
        if output is None:
            output = self._output = DtlsRtpOutput(self._sender.transport)
        buffered = output.send(header, payload)
        self._sent.put(header, payload)
        counters = self._counters
        counters.packets_sent += 1
        counters.octets_sent += len(payload)
        stream = self._stream
        if stream is not None and not stream.connected and buffered == 0:
            self._connect_stream(output)
        return buffered

    def _connect_stream(self, output: RtpOutput) -> None:
        # Once per output target (an ICE pair): a target the compiled stream
        # cannot use (say, a scoped IPv6 address) leaves this channel on Python.
        fast_path = getattr(output, "fast_path", None)
        target = fast_path() if fast_path is not None else None
        if target is None:
            return
        key = target["pair"] if target.get("pair") is not None else output
        if key is self._fast_tried:
            return
        self._fast_tried = key
        stream = self._stream
        assert stream is not None
        try:
            stream.connect(**target)
        except (ValueError, TypeError) as exc:
            logger.info("compiled fan-out not used for %s: %s", target.get("host"), exc)

    def buffered_bytes(self) -> int:
        """Bytes the transport's socket still buffers (0 before the first send)."""
        return 0 if self._output is None else self._output.buffered_bytes()

    def sent_sequence_numbers(self) -> list[int]:
        """Sequence numbers of the packets in the retransmission history (diagnostics, tests)."""
        return self._sent.sequence_numbers()

    def sent_among(self, first: int, last: int) -> tuple[int, int]:
        """Of the sequence numbers ``first..last`` (extended: unwrapped, as a receiver
        report counts them), how many were sent, and how many the history can tell.

        A number we never sent was skipped: its packet never reached us (the
        publisher's uplink lost it; the rewriter keeps the source's gaps). A slot
        that a newer packet has taken cannot tell. In C where the fan-out is built
        (once per receiver report per track, ~75 numbers for a video).
        """
        return self._sent.sent_among(first, last)

    def packet_for_retransmission(self, sequence_number: int) -> RtpPacket | None:
        """The sent packet with this sequence number, put where aiortc's ``_retransmit`` looks."""
        sent = self._sent.get(sequence_number)
        if sent is None:
            return None
        packet = RtpPacket.parse(sent[0] + sent[1], self.extensions_map)
        self._history[sequence_number % RTP_HISTORY_SIZE] = packet
        return packet


_NTP_TIMESTAMP: Final = SENDER_ATTRIBUTES["ntp_timestamp"]
_RTP_TIMESTAMP: Final = SENDER_ATTRIBUTES["rtp_timestamp"]
_OCTET_COUNT: Final = SENDER_ATTRIBUTES["octet_count"]
_PACKET_COUNT: Final = SENDER_ATTRIBUTES["packet_count"]
_LSR: Final = SENDER_ATTRIBUTES["lsr"]
_LSR_TIME: Final = SENDER_ATTRIBUTES["lsr_time"]
_RTT: Final = SENDER_ATTRIBUTES["rtt"]
_STATS: Final = SENDER_ATTRIBUTES["stats"]
_KIND: Final = SENDER_ATTRIBUTES["kind"]


def _channel_counter(name: str, channel_attribute: str) -> property:
    """A property standing in for one of RTCRtpSender's private sender-report counters.

    aiortc's RTCP loop and ``getStats()`` read ``self.__packet_count`` etc.; on
    our subclass those names resolve to these properties, which read the
    channel's counters at report time. Writes (aiortc's ``__init__`` zeroing
    them) go to a shadow value used until the channel exists.
    """
    shadow = f"_yitang_shadow_{channel_attribute}"

    def get(self: HookedRtpSender) -> int:
        channel = self.channel
        if channel is None:
            value: int = getattr(self, shadow, 0)
            return value
        result: int = getattr(channel, channel_attribute)
        return result

    def set_(self: HookedRtpSender, value: int) -> None:
        setattr(self, shadow, value)

    return property(get, set_, doc=f"aiortc's {name}, read from the channel.")


def rtcp_recipients(router: RtpRouter, packet: AnyRtcpPacket) -> set[Any]:
    """The receivers and senders an RTCP packet is for: ``RtpRouter.route_rtcp``
    (pinned in INGEST_PORTED_SOURCES), without its nested function, whose annotations
    Python evaluates, through ``typing``'s cache, at every call: ~1/8 of what handling
    a subscriber's receiver report cost."""
    recipients: set[Any] = set()
    ssrc_table, senders = router.ssrc_table, router.senders
    # to RTP receivers
    if isinstance(packet, RtcpSrPacket):
        receiver = ssrc_table.get(packet.ssrc)
        if receiver is not None:
            recipients.add(receiver)
    elif isinstance(packet, RtcpByePacket):
        for source in packet.sources:
            receiver = ssrc_table.get(source)
            if receiver is not None:
                recipients.add(receiver)
    # to RTP senders
    if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
        for report in packet.reports:
            sender = senders.get(report.ssrc)
            if sender is not None:
                recipients.add(sender)
    elif isinstance(packet, (RtcpPsfbPacket, RtcpRtpfbPacket)):
        sender = senders.get(packet.media_ssrc)
        if sender is not None:
            recipients.add(sender)
        # for REMB packets, media_ssrc is always 0: the SSRCs are in the FCI
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                for ssrc in unpack_remb_fci(packet.fci)[1]:
                    sender = senders.get(ssrc)
                    if sender is not None:
                        recipients.add(sender)
            except ValueError:
                pass
    return recipients


class HookedRtpSender(RTCRtpSender):
    """An RTCRtpSender whose RTP loop is :meth:`run_forwarding`.

    aiortc still negotiates it, starts it (``send()``), stops it (``stop()``,
    which also sends RTCP BYE so the remote track ends) and routes RTCP feedback
    to it: NACKs are answered from the history that :class:`RtpSendChannel`
    keeps, PLI/FIR become :meth:`on_keyframe_request`. Its sender reports carry
    the channel's counters and go out with those of the transport's other
    senders (:class:`TransportSenderReports`), not from a loop of its own.
    """

    channel: RtpSendChannel | None = None

    #: Packets the receiver asked for again (RTCP NACK), answered from the history; the
    #: metrics collector reads it (one count per NACKed packet, never per forwarded one).
    nacks_received = 0
    #: ((SSRC, CNAME), the SDES packet) of the last report (see sender_report).
    _sdes: tuple[tuple[int, str], bytes] | None = None
    #: The last receiver report block about this sender, as plain numbers: when it came
    #: (``time.time()``; 0.0 before the first), the reporting SSRC, its loss figures and
    #: the packets sent by then (read by getStats() and server/media/connection_counters.py).
    #: Not the parsed block in a tuple: ~2 000 senders replace theirs every second, and
    #: objects the cyclic collector tracks that live that long are what its young
    #: collections walk (20 000 of them took 3-12 ms, the event loop stopped meanwhile).
    report_time = 0.0
    report_reporter = 0
    report_fraction_lost = 0
    report_packets_lost = 0
    report_jitter = 0
    report_packets_sent = 0
    # The report_time of the last block getStats() turned into a statistics object.
    _report_in_stats = 0.0

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            self._take_reports(packet)
        else:
            await super()._handle_rtcp_packet(packet)

    def _take_reports(self, packet: RtcpRrPacket | RtcpSrPacket) -> None:
        # RTCRtpSender._handle_rtcp_packet's reports (pinned in INGEST_PORTED_SOURCES):
        # the round-trip time at once, as aiortc; the statistics object aiortc made for
        # each block is made when getStats() asks for it. A receiver reports on each
        # stream about every second, and statistics are read every few seconds: that
        # object was ~1/6 of what handling a subscriber's report cost.
        ssrc = self._ssrc
        for report in packet.reports:
            if report.ssrc != ssrc:
                continue
            now = time.time()
            rtt: float | None = getattr(self, _RTT)
            if getattr(self, _LSR) == report.lsr and report.dlsr:
                sample = now - getattr(self, _LSR_TIME) - (report.dlsr / 65536)
                rtt = sample if rtt is None else RTT_ALPHA * rtt + (1 - RTT_ALPHA) * sample
                setattr(self, _RTT, rtt)
            self.report_time = now
            self.report_reporter = packet.ssrc
            self.report_fraction_lost = report.fraction_lost
            self.report_packets_lost = report.packets_lost
            self.report_jitter = report.jitter
            self.report_packets_sent = getattr(self, _PACKET_COUNT)

    async def getStats(self) -> RTCStatsReport:
        """aiortc's statistics, with those of the last receiver report block."""
        when = self.report_time
        if when != self._report_in_stats:
            self._report_in_stats = when
            stats: RTCStatsReport = getattr(self, _STATS)
            stats.add(
                RTCRemoteInboundRtpStreamStats(
                    timestamp=datetime.datetime.fromtimestamp(when, datetime.UTC),
                    type="remote-inbound-rtp",
                    id="remote-inbound-rtp_" + str(id(self)),
                    ssrc=self.report_reporter,
                    kind=getattr(self, _KIND),
                    transportId=self.transport._stats_id,
                    packetsReceived=self.report_packets_sent - self.report_packets_lost,
                    packetsLost=self.report_packets_lost,
                    jitter=self.report_jitter,
                    # None until known, as aiortc
                    roundTripTime=getattr(self, _RTT),
                    fractionLost=self.report_fraction_lost,
                )
            )
        return await super().getStats()

    async def run_forwarding(self, channel: RtpSendChannel) -> None:
        """Send packets through ``channel`` until cancelled. Subclasses implement."""
        raise NotImplementedError

    def on_keyframe_request(self) -> None:
        """The remote asked for a keyframe (PLI or FIR). Subclasses implement."""

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        started: asyncio.Event = getattr(self, SENDER_ATTRIBUTES["rtp_started"])
        exited: asyncio.Event = getattr(self, SENDER_ATTRIBUTES["rtp_exited"])
        started.set()
        try:
            await self.run_forwarding(RtpSendChannel(self, codec))
        except (asyncio.CancelledError, ConnectionError):
            # Cancelled by stop(), or the transport closed: both end the loop normally,
            # as in aiortc's own _run_rtp.
            pass
        except Exception:
            logger.exception("forwarding sender loop failed")
        finally:
            # stop() waits for this event; it must be set whatever happened.
            exited.set()

    async def _run_rtcp(self) -> None:
        # aiortc's loop sends each sender's report on its own (an SRTP protect and a
        # datagram per sender per second: with 22 forwarded tracks, 22 a second); one
        # loop per transport sends them all in one compound packet. The BYE at the end
        # is aiortc's.
        started: asyncio.Event = getattr(self, SENDER_ATTRIBUTES["rtcp_started"])
        exited: asyncio.Event = getattr(self, SENDER_ATTRIBUTES["rtcp_exited"])
        started.set()
        await TransportSenderReports.of(self.transport).report_until_stopped(self)
        try:
            await self._send_rtcp([RtcpByePacket(sources=[sender_ssrc(self)])])
        finally:
            exited.set()

    def sender_report(self) -> bytes:
        """This sender's report now, serialized: the SR and SDES aiortc's RTCP loop makes
        (the same bytes), noted for the round-trip time of the receiver's answer.

        Packed here rather than through aiortc's packet objects: ~0.5 us against ~11 us
        per sender, and a subscriber's transport reports for every track it receives
        each interval, in one callback that holds the event loop (packets wait)."""
        ntp_timestamp: int = getattr(self, SENDER_ATTRIBUTES["ntp_timestamp"])
        ssrc = sender_ssrc(self)
        report = _SENDER_REPORT.pack(
            _SENDER_REPORT_FIRST_BYTE,
            RTCP_SR,
            _SENDER_REPORT_WORDS,
            ssrc,
            ntp_timestamp,
            getattr(self, SENDER_ATTRIBUTES["rtp_timestamp"]),
            getattr(self, SENDER_ATTRIBUTES["packet_count"]) & 0xFFFFFFFF,
            getattr(self, SENDER_ATTRIBUTES["octet_count"]) & 0xFFFFFFFF,
        )
        setattr(self, SENDER_ATTRIBUTES["lsr"], (ntp_timestamp >> 16) & 0xFFFFFFFF)
        setattr(self, SENDER_ATTRIBUTES["lsr_time"], time.time())
        cname: str | None = getattr(self, SENDER_ATTRIBUTES["cname"])
        if cname is None:
            return report
        # The SDES chunk never changes for one SSRC and CNAME: made once.
        cached = self._sdes
        if cached is None or cached[0] != (ssrc, cname):
            items = [(1, cname.encode("utf8"))]
            chunk = bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=ssrc, items=items)]))
            cached = self._sdes = ((ssrc, cname), chunk)
        return report + cached[1]

    def _send_keyframe(self) -> None:
        self.on_keyframe_request()

    async def _retransmit(self, sequence_number: int) -> None:
        self.nacks_received += 1
        channel = self.channel
        if channel is not None and channel.packet_for_retransmission(sequence_number) is not None:
            await super()._retransmit(sequence_number)


#: A sender report without report blocks (RFC 3550 section 6.4.1), as aiortc packs it:
#: V=2 and RC=0, PT, length in words minus one, SSRC, then the sender info (NTP and RTP
#: timestamps, packet and octet counts).
_SENDER_REPORT: Final = struct.Struct("!BBHLQLLL")
_SENDER_REPORT_FIRST_BYTE: Final = 2 << 6
_SENDER_REPORT_WORDS: Final = _SENDER_REPORT.size // 4 - 1
#: Largest compound report datagram before SRTCP's trailer (well under any path's MTU).
_REPORT_DATAGRAM_BYTES: Final = 1100
#: Where a DTLS transport keeps its TransportSenderReports and TransportReceiverReports
#: (our attributes, not aiortc's).
_TRANSPORT_REPORTS_ATTRIBUTE: Final = "_yitang_sender_reports"
_TRANSPORT_RECEIVER_REPORTS_ATTRIBUTE: Final = "_yitang_receiver_reports"


class _TransportReports:
    """One RTCP timer per DTLS transport for the reports of all its members.

    Every 0.5–1.5 s (aiortc's interval), each member's report goes out, together, as
    compound packets of up to :data:`_REPORT_DATAGRAM_BYTES` (RFC 8108 section 5.3: an
    endpoint with several SSRCs may report them in one compound packet; the other end
    routes each report by its SSRC). The send runs in place: aiortc's ``_send_rtp`` is a
    coroutine, but nothing in it waits (SRTCP protect, then the ICE connection's
    ``sendto``), so an interval costs one timer callback, where a task that sleeps in a
    loop costs two turns of the event loop. The timer stops with the last member, or
    when the transport has closed (its members' own stop follows).
    """

    _attribute: str = ""

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._transport = transport
        self._members: dict[Any, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Compound packets sent, and the reports in them (stats, tests).
        self.datagrams_sent = 0
        self.reports_sent = 0

    @classmethod
    def of(cls, transport: RTCDtlsTransport) -> Self:
        """The transport's reporter (made on first use; it lives as long as the transport)."""
        reports = vars(transport).get(cls._attribute)
        if not isinstance(reports, cls):
            reports = cls(transport)
            setattr(transport, cls._attribute, reports)
        return reports

    @property
    def running(self) -> bool:
        """Whether the next interval's reports are scheduled."""
        return self._timer is not None

    def add(self, member: Any) -> None:
        """Report for ``member`` from the next interval on."""
        self._members[member] = None
        if self._timer is None:
            self._schedule()

    def remove(self, member: Any) -> None:
        """Stop reporting for ``member``; the timer stops with the last one."""
        self._members.pop(member, None)
        if not self._members and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def report_until_stopped(self, member: Any) -> None:
        """Report for ``member`` until the task awaiting this is cancelled (the member's
        ``stop()`` cancels its RTCP task); returns normally then."""
        self.add(member)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            self.remove(member)

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(0.5 + random.random(), self._interval)

    def _interval(self) -> None:
        self._timer = None
        try:
            payloads = self._compound_payloads()
        except Exception:
            logger.exception("RTCP reports failed on %r; skipped this interval", self)
            payloads = []
        for payload in payloads:
            try:
                run_in_place(self._transport._send_rtp(payload), self._spawn)
            except ConnectionError:
                return  # the transport closed: its members are stopping
            except Exception:
                logger.exception("RTCP report send failed on %r", self)
                continue
            self.datagrams_sent += 1
        if self._members:
            self._schedule()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _member_report(self, member: Any) -> bytes:
        raise NotImplementedError

    def _compound_payloads(self) -> list[bytes]:
        payloads: list[bytes] = []
        current = b""
        for member in list(self._members):
            report = self._member_report(member)
            if not report:
                continue
            self.reports_sent += 1
            if current and len(current) + len(report) > _REPORT_DATAGRAM_BYTES:
                payloads.append(current)
                current = b""
            current += report
        if current:
            payloads.append(current)
        return payloads


class TransportSenderReports(_TransportReports):
    """The sender reports and SDES of a transport's :class:`HookedRtpSender` s.

    A subscriber with 22 forwarded tracks costs one SRTCP protect and one datagram a
    second, not 22 (aiortc's loop sends each sender's report on its own).
    """

    _attribute = _TRANSPORT_REPORTS_ATTRIBUTE

    def _member_report(self, member: Any) -> bytes:
        sender: HookedRtpSender = member
        return sender.sender_report()


class TransportReceiverReports(_TransportReports):
    """The receiver reports of a transport's receivers (a publisher's audio and video).

    aiortc runs a task per receiver that sleeps and sends its report: four turns of the
    event loop a second for a publisher, in a process whose wake-ups cost far more than
    their work. With the direct ingest installed, each receiver's RTCP task only waits
    (:func:`report_with_transport`), and this one timer reports for all of them.
    """

    _attribute = _TRANSPORT_RECEIVER_REPORTS_ATTRIBUTE

    def _member_report(self, member: Any) -> bytes:
        report = receiver_report(member)
        return b"" if report is None else bytes(report)


def receiver_report(receiver: RTCRtpReceiver) -> RtcpRrPacket | None:
    """One interval's receiver report, as aiortc's ``RTCRtpReceiver._run_rtcp`` builds it
    (pinned), or None when it sends none (no RTCP SSRC yet, nothing received).

    Reading ``fraction_lost`` starts the next interval of each stream's statistics, as
    it does there: one call per interval."""
    state = vars(receiver)
    lsr_by_ssrc = state[RECEIVER_ATTRIBUTES["lsr"]]
    lsr_times = state[RECEIVER_ATTRIBUTES["lsr_time"]]
    reports = []
    for ssrc, stream in state[RECEIVER_ATTRIBUTES["remote_streams"]].items():
        lsr = 0
        dlsr = 0
        if ssrc in lsr_by_ssrc:
            lsr = lsr_by_ssrc[ssrc]
            delay = time.time() - lsr_times[ssrc]
            if delay > 0 and delay < 65536:
                dlsr = int(delay * 65536)
        reports.append(
            RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=stream.fraction_lost,
                packets_lost=stream.packets_lost,
                highest_sequence=stream.max_seq,
                jitter=stream.jitter,
                lsr=lsr,
                dlsr=dlsr,
            )
        )
    rtcp_ssrc = state[RECEIVER_ATTRIBUTES["rtcp_ssrc"]]
    if rtcp_ssrc is None or not reports:
        return None
    return RtcpRrPacket(ssrc=rtcp_ssrc, reports=reports)


async def report_with_transport(receiver: RTCRtpReceiver) -> None:
    """In place of aiortc's ``RTCRtpReceiver._run_rtcp`` (the task ``receive()`` starts and
    ``stop()`` cancels): the receiver reports with its transport's others
    (:class:`TransportReceiverReports`) until it stops; this task only waits."""
    state = vars(receiver)
    state[RECEIVER_ATTRIBUTES["rtcp_started"]].set()
    try:
        await TransportReceiverReports.of(receiver.transport).report_until_stopped(receiver)
    finally:
        state[RECEIVER_ATTRIBUTES["rtcp_exited"]].set()


# aiortc's RTCP loop builds each sender report from these four names (pinned by the tests).
setattr(HookedRtpSender, _PACKET_COUNT, _channel_counter("packet count", "packets_sent"))
setattr(HookedRtpSender, _OCTET_COUNT, _channel_counter("octet count", "octets_sent"))
setattr(HookedRtpSender, _NTP_TIMESTAMP, _channel_counter("NTP timestamp", "last_ntp_time"))
setattr(HookedRtpSender, _RTP_TIMESTAMP, _channel_counter("RTP timestamp", "last_rtp_timestamp"))


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC the sender announces in SDP and must use in its packets."""
    ssrc: int = getattr(sender, SENDER_ATTRIBUTES["ssrc"])
    return ssrc


def install_sender(
    transceiver: RTCRtpTransceiver, sender: RTCRtpSender, *, stream_id: str, track_id: str
) -> None:
    """Make ``sender`` the transceiver's sender, with the given msid.

    aiortc creates a plain RTCRtpSender inside addTransceiver(); we swap it
    before the first offer so SDP announces our sender's SSRC. The msid
    (``stream_id track_id``) lets the subscriber map the track to a participant.
    """
    if not hasattr(transceiver, TRANSCEIVER_SENDER_ATTRIBUTE):
        raise RuntimeError(f"aiortc changed: no {TRANSCEIVER_SENDER_ATTRIBUTE}")
    if transceiver.mid is not None:
        raise RuntimeError("install_sender() after negotiation")
    setattr(transceiver, TRANSCEIVER_SENDER_ATTRIBUTE, sender)
    # RTCP from this transceiver's receiver (e.g. RR) must carry the sender's SSRC.
    transceiver.receiver._set_rtcp_ssrc(sender_ssrc(sender))
    setattr(sender, SENDER_ATTRIBUTES["stream_id"], stream_id)
    setattr(sender, SENDER_ATTRIBUTES["track_id"], track_id)


# --- Receivers that never receive: no bandwidth estimator -----------------------------

#: The name in aiortc.rtcrtpreceiver that RTCRtpReceiver.__init__ calls for a video
#: receiver's bandwidth estimator (pinned by tests/media/test_aiortc_internals.py).
RECEIVER_ESTIMATOR_NAME: Final = "RemoteBitrateEstimator"


def _no_estimator() -> None:
    return None


@contextmanager
def receivers_without_estimator() -> Iterator[None]:
    """Video receivers made inside the block get no bandwidth estimator (None, which
    aiortc's receiver checks for: it then sends no REMB).

    aiortc gives every video receiver a ``RemoteBitrateEstimator`` whose
    ``RateCounter`` holds 1 000 one-millisecond bucket objects, even on a send-only
    transceiver that never receives a packet. A node's subscribe connections are
    send-only, a transceiver per publisher's track for each subscriber: in a burst of
    96 joins, making those buckets was 18 % of the node's CPU (py-spy), and the ~2
    million objects they left in the heap made each full collection take up to
    400 ms. Every receiver made meanwhile goes without: keep the block synchronous (a
    node's ``addTransceiver``), or make it a whole process none of whose receivers
    estimates (the load tool's clients).
    """
    module = sys.modules[RTCRtpReceiver.__module__]
    original = getattr(module, RECEIVER_ESTIMATOR_NAME)
    setattr(module, RECEIVER_ESTIMATOR_NAME, _no_estimator)
    try:
        yield
    finally:
        setattr(module, RECEIVER_ESTIMATOR_NAME, original)


# --- ICE: which host addresses to gather on ------------------------------------------

_gather_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "yitang_media_gather_addresses", default=None
)
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    # Replacement for aioice.ice.get_host_addresses: outside gather_only_on() it is
    # the original, so other users of aiortc in the process are unaffected.
    addresses = _gather_addresses.get()
    if addresses is None:
        assert _original_get_host_addresses is not None
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    selected = []
    for address in addresses:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            selected.append(address)
    return selected


def _install_host_address_hook() -> None:
    global _original_get_host_addresses
    current = aioice.ice.get_host_addresses
    if current is _get_host_addresses:
        return
    _original_get_host_addresses = current
    aioice.ice.get_host_addresses = _get_host_addresses


_remote_allow: contextvars.ContextVar[tuple[IpNetwork, ...]] = contextvars.ContextVar(
    "yitang_media_remote_allow", default=()
)
#: Attribute set on an aioice Connection gathered under an allow-list.
_CONNECTION_ALLOW_ATTRIBUTE: Final = "_yitang_remote_allow"
_original_gather_candidates: Callable[..., Any] | None = None
_original_request_received: Callable[..., Any] | None = None


async def _gather_candidates(self: aioice.ice.Connection) -> None:
    # The allow-list in force where gathering starts belongs to this connection
    # for its whole life (checks arrive later, outside any context).
    allow = _remote_allow.get()
    if allow:
        setattr(self, _CONNECTION_ALLOW_ATTRIBUTE, allow)
    assert _original_gather_candidates is not None
    await _original_gather_candidates(self)


def _request_received(
    self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
) -> None:
    allow: tuple[IpNetwork, ...] = getattr(self, _CONNECTION_ALLOW_ATTRIBUTE, ())
    if allow and not _address_in(addr[0], allow):
        # Not answered and not learnt as a peer-reflexive candidate: we never send there.
        logger.debug("ICE check from %s dropped: outside the remote allow-list", addr[0])
        return
    assert _original_request_received is not None
    _original_request_received(self, message, addr, protocol)


def _address_in(host: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _install_remote_allow_hooks() -> None:
    global _original_gather_candidates, _original_request_received
    connection = aioice.ice.Connection
    if connection.gather_candidates is not _gather_candidates:
        _original_gather_candidates = connection.gather_candidates
        connection.gather_candidates = _gather_candidates  # type: ignore[method-assign]
    if connection.request_received is not _request_received:
        _original_request_received = connection.request_received
        connection.request_received = _request_received  # type: ignore[method-assign]


@contextmanager
def gather_only_on(
    addresses: tuple[str, ...] | None, remote_allow: tuple[IpNetwork, ...] = ()
) -> Iterator[None]:
    """Within this context, ICE gathering uses exactly ``addresses`` (None: aioice default).

    aioice never gathers loopback by itself; this is how 127.0.0.1 is used. Wrap
    ``await pc.setLocalDescription(...)`` (where aiortc gathers): the setting is a
    context variable, so it follows the gathering tasks and nothing else.
    With ``remote_allow``, the connections gathered here drop every incoming
    check from outside those networks for the rest of their life.
    """
    _install_host_address_hook()
    _install_remote_allow_hooks()
    token = _gather_addresses.set(addresses)
    allow_token = _remote_allow.set(tuple(remote_allow))
    try:
        yield
    finally:
        _remote_allow.reset(allow_token)
        _gather_addresses.reset(token)


def signature_parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    """Parameter names of ``function`` (used by the pin test)."""
    return tuple(inspect.signature(function).parameters)
