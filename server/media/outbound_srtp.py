"""The server's outbound SRTP: its own AES-GCM for RTP (``_outbound_srtp.c``), libsrtp for RTCP.

Every forwarded copy is SRTP-protected, and libsrtp spends ~2 µs per copy above
the AES-GCM itself, a third of it finding the packet's SSRC in its linked list
of streams (docs/forwarding.md, *Outbound SRTP*). When DTLS negotiates an AEAD
AES-GCM profile (RFC 7714; aiortc's first choice), a subscribe transport's
``_tx_srtp`` becomes an :class:`OutboundSrtpSession`: RTP through the compiled
protector, byte for byte what libsrtp would have sent
(tests/media/test_outbound_srtp.py), and RTCP through the libsrtp session aiortc
made (SRTCP's index is its own).

All of a transport's RTP must go through one protector: each counts an SSRC's
packets (its rollover counter) from the first it sees, and two protectors of one
key would encrypt different packets under one GCM nonce. So the session replaces
libsrtp's inside aiortc's ``_setup_srtp``, before the transport is connected and
anything can be sent (:func:`install`), or not at all. aiortc's RTX and our
Python forwarding path call its ``protect``, the compiled fan-out its C function
(:meth:`OutboundSrtpProtector.fast_path`).

``YITANG_OUTBOUND_SRTP=libsrtp`` keeps libsrtp for everything (the reference,
for the benchmark). AES-CM profiles always stay with libsrtp.
"""

from __future__ import annotations

import os
from typing import Any, Final

import pylibsrtp
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport

#: The environment variable that selects the protector ("libsrtp": libsrtp for all).
ENVIRONMENT_VARIABLE: Final = "YITANG_OUTBOUND_SRTP"

#: SHA-256 (inspect.getsource) of the aiortc methods this relies on: ``_setup_srtp``,
#: whose key export :func:`_transmit_key` repeats, and ``_send_rtp``, which must ask
#: ``_tx_srtp`` for nothing but ``protect`` and ``protect_rtcp``. When aiortc changes
#: one, tests/media/test_outbound_srtp.py says so, and it must be compared again.
PORTED_SOURCES: Final = {
    "RTCDtlsTransport._setup_srtp": (
        "75cc6ec308f16da118620d8264dfb484c4cb870cf2146070b6d502c59da0eb33"
    ),
    "RTCDtlsTransport._send_rtp": (
        "763b02bceb0b0ab9c08d87eb6c0852a404322aafd377d28ad4a719f7c790ed9d"
    ),
}

#: The profiles protected here (AEAD AES-GCM, 16-byte tag).
GCM_PROFILES: Final = frozenset(
    {pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM}
)

#: The attribute marking a transport whose SRTP set-up is hooked.
_HOOKED_ATTRIBUTE: Final = "_yitang_outbound_srtp"

IMPORT_ERROR: ImportError | None
try:
    from ._outbound_srtp import MAX_PACKET, OutboundSrtp
    from ._outbound_srtp import MAX_STREAMS as MAX_STREAMS

    IMPORT_ERROR = None
except ImportError as exc:  # not built: libsrtp protects everything
    IMPORT_ERROR = exc

#: Whether transports hooked from now on get the compiled protector (tests switch it).
enabled: bool = IMPORT_ERROR is None and os.environ.get(ENVIRONMENT_VARIABLE, "") != "libsrtp"


def available() -> bool:
    """True if the extension is built and importable."""
    return IMPORT_ERROR is None


if IMPORT_ERROR is None:

    class OutboundSrtpSession(OutboundSrtp):
        """A transport's outbound SRTP: RTP protected here, RTCP by ``rtcp`` (libsrtp).

        Stands in for the ``pylibsrtp.Session`` aiortc keeps as ``_tx_srtp``,
        which it only ever asks to ``protect`` and ``protect_rtcp``.
        """

        def __init__(self, master_key: bytes, master_salt: bytes, rtcp: pylibsrtp.Session) -> None:
            super().__init__(master_key, master_salt)
            self._rtcp = rtcp

        def protect_rtcp(self, packet: bytes) -> bytes:
            """SRTCP-protect ``packet`` with libsrtp (as ``pylibsrtp.Session.protect_rtcp``)."""
            return self._rtcp.protect_rtcp(packet)


class OutboundSrtpProtector:
    """:class:`~server.media.aiortc_internals.SrtpProtector`'s interface over an
    :class:`OutboundSrtpSession`: header + payload in, SRTP packet out."""

    def __init__(self, session: OutboundSrtpSession) -> None:
        self._session = session
        self.protect = session.protect_parts

    def fast_path(self) -> dict[str, Any]:
        """What the compiled fan-out needs to call the protector itself (as libsrtp's)."""
        protect, context = self._session.fast_path()
        return {
            "protect": protect,
            "srtp": context,
            "session": self._session,
            "max_length": MAX_PACKET,
        }


def install(pc: RTCPeerConnection) -> int:
    """Have each of ``pc``'s DTLS transports not yet connected protect its RTP here once
    its keys are set up. Idempotent; call after the local description is set (when the
    transports exist) and before ICE can connect. Returns the transports hooked now."""
    if not enabled:
        return 0
    hooked = 0
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None or getattr(transport, _HOOKED_ATTRIBUTE, False):
            continue
        setattr(transport, _HOOKED_ATTRIBUTE, True)
        # Keys already set up: libsrtp may have protected RTP with them; it stays.
        if transport._tx_srtp is not None:
            continue
        _hook(transport)
        hooked += 1
    return hooked


def describe(transport: RTCDtlsTransport) -> tuple[str, str] | None:
    """How ``transport`` protects the RTP it sends: ``(protector, profile)``, the
    protector ``"compiled"`` (:class:`OutboundSrtpSession`) or ``"libsrtp"``, and the
    DTLS-SRTP profile negotiated (e.g. ``SRTP_AEAD_AES_128_GCM``); None before its
    keys are set up. For the metrics: which of a node's receivers get the compiled
    protector depends on what their browsers offer."""
    session = transport._tx_srtp
    ssl = transport._ssl
    if session is None or ssl is None:
        return None
    selected = ssl.get_selected_srtp_profile()
    profile = selected.decode("ascii", "replace") if isinstance(selected, bytes) else "unknown"
    compiled = IMPORT_ERROR is None and isinstance(session, OutboundSrtpSession)
    return ("compiled" if compiled else "libsrtp"), profile


def _hook(transport: RTCDtlsTransport) -> None:
    original = transport._setup_srtp

    def setup_srtp() -> None:
        original()
        # Still within the handshake's completion: nothing has been sent with it yet.
        rtcp = transport._tx_srtp
        if rtcp is None:  # no profile negotiated: the transport has failed
            return
        key = _transmit_key(transport)
        if key is not None:
            # aiortc asks it for protect() and protect_rtcp() only (PORTED_SOURCES).
            transport._tx_srtp = OutboundSrtpSession(*key, rtcp=rtcp)  # type: ignore[assignment]

    # An instance attribute: aiortc calls self._setup_srtp() once the handshake is done.
    transport._setup_srtp = setup_srtp  # type: ignore[method-assign]


def _transmit_key(transport: RTCDtlsTransport) -> tuple[bytes, bytes] | None:
    """The master key and salt of ``transport``'s outbound SRTP, if its profile is GCM.

    What aiortc's ``_setup_srtp`` derives for its ``tx_policy`` (RFC 5764 §4.2):
    the exported keying material is client key, server key, client salt, server
    salt, and each side sends with its own. Exporting again gives the same bytes.
    """
    ssl = transport._ssl
    assert ssl is not None  # the handshake is done
    selected = ssl.get_selected_srtp_profile()
    profile = next((p for p in transport._srtp_profiles if p.openssl_profile == selected), None)
    if profile is None or profile.libsrtp_profile not in GCM_PROFILES:
        return None
    view = ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key_and_salt = profile.get_key_and_salt(view, 1 if transport._role == "server" else 0)
    return key_and_salt[: profile.key_length], key_and_salt[profile.key_length :]
