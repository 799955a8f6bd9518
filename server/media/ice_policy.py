"""ICE addresses as configuration: what we gather on, announce and accept.

* Local: candidates are gathered only on the configured addresses (see
  ``aiortc_internals.gather_only_on``); none configured = aiortc's default.
* Announced: for 1:1 NAT, our candidates (and ``c=`` lines) carry the announced
  address instead of the local one.
* Remote allow: remote candidates outside the allowed networks are dropped, from
  SDP and from trickle alike, so the server never sends to them. mDNS (``.local``)
  candidates cannot be checked and are dropped when an allow-list is set.
  Incoming checks from outside the allowed networks are dropped too (see
  ``aiortc_internals.gather_only_on``), so no peer-reflexive candidate is learnt there.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceCandidate, RTCPeerConnection
from aiortc import sdp as aiortc_sdp

from .bundle_candidates import bundle_remote_candidates
from .config import MediaConfig
from .errors import MediaError

logger = logging.getLogger(__name__)

_MID_RE = re.compile(r"^[A-Za-z0-9_.\-~]{1,32}$")


class IcePolicy:
    """Applies a :class:`MediaConfig`'s ICE settings to SDP text and trickled candidates."""

    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.gather_addresses = config.gather_addresses
        self._announced = config.announced_addresses
        self._allow = tuple(config.ice_remote_allow)
        #: Networks remote candidates and incoming checks must come from (empty: any).
        self.remote_allow = self._allow

    def rtc_configuration(self) -> RTCConfiguration:
        """Peer-connection configuration: no STUN/TURN (nothing leaves the host
        unless a candidate says so), and one transport for all m-lines."""
        # iceServers must be an empty list: None would make aiortc use a public STUN server.
        return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)

    def remote_address_allowed(self, host: str) -> bool:
        """True if the server may send to ``host`` (an IP literal or mDNS name)."""
        if not self._allow:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # mDNS or garbage: cannot be checked against the allow-list
        return any(address in network for network in self._allow)

    def remote_sdp(self, text: str) -> str:
        """A remote description as aiortc should apply it: disallowed candidates dropped,
        the BUNDLE transport's candidates where aiortc reads them (bundle_candidates.py)."""
        return bundle_remote_candidates(self.filter_remote_sdp(text))

    def filter_remote_sdp(self, text: str) -> str:
        """Drop remote ``a=candidate`` lines whose address is not allowed."""
        if not self._allow:
            return text
        kept = []
        for line in text.splitlines():
            if line.startswith("a=candidate:"):
                fields = line.split()
                if len(fields) < 6 or not self.remote_address_allowed(fields[4]):
                    logger.debug("dropping remote candidate %s", line[:100])
                    continue
            kept.append(line)
        return "\r\n".join(kept) + "\r\n"

    def rewrite_local_sdp(self, text: str) -> str:
        """Replace local addresses by their announced ones in our own SDP."""
        if not self._announced:
            return text
        out = []
        for line in text.splitlines():
            if line.startswith("a=candidate:"):
                fields = line.split(" ")
                if len(fields) > 4 and fields[4] in self._announced:
                    fields[4] = self._announced[fields[4]]
                    line = " ".join(fields)
            elif line.startswith("c=IN IP"):
                fields = line.split(" ")
                if len(fields) == 3 and fields[2] in self._announced:
                    fields[2] = self._announced[fields[2]]
                    line = " ".join(fields)
            out.append(line)
        return "\r\n".join(out) + "\r\n"

    def parse_candidate(self, candidate: object) -> tuple[bool, RTCIceCandidate | None]:
        """Validate a trickled candidate (an RTCIceCandidateInit-like mapping).

        Returns ``(accepted, candidate)``: ``(True, None)`` is end-of-candidates,
        ``(False, None)`` a valid candidate the allow-list rejects. Raises
        MediaError("bad_candidate") for anything malformed.
        """
        if not isinstance(candidate, Mapping):
            raise MediaError("bad_candidate", "candidate must be an object")
        value = candidate.get("candidate")
        mid = candidate.get("sdpMid")
        index = candidate.get("sdpMLineIndex")
        if not isinstance(value, str):
            raise MediaError("bad_candidate", "candidate.candidate must be a string")
        if len(value.encode("utf-8", errors="replace")) > self.config.max_candidate_bytes:
            raise MediaError("bad_candidate", "candidate is too long")
        if mid is not None and (not isinstance(mid, str) or not _MID_RE.match(mid)):
            raise MediaError("bad_candidate", "invalid sdpMid")
        if index is not None and (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < self.config.max_m_lines
        ):
            raise MediaError("bad_candidate", "invalid sdpMLineIndex")
        if mid is None and index is None:
            raise MediaError("bad_candidate", "sdpMid or sdpMLineIndex is required")
        text = value.strip()
        if not text:
            return True, None  # end-of-candidates
        for prefix in ("a=", "candidate:"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        try:
            parsed = aiortc_sdp.candidate_from_sdp(text)
            if not 0 < parsed.port < 65536 or parsed.protocol.lower() not in ("udp", "tcp"):
                raise ValueError("bad port or protocol")
        except Exception:
            raise MediaError("bad_candidate", "candidate could not be parsed") from None
        if not self.remote_address_allowed(parsed.ip):
            logger.debug("ignoring remote candidate on %s (not allowed)", parsed.ip)
            return False, None
        parsed.sdpMid = mid
        parsed.sdpMLineIndex = index
        return True, parsed


async def add_candidate_bundled(pc: RTCPeerConnection, candidate: RTCIceCandidate | None) -> None:
    """Add a validated candidate (or end-of-candidates) to the bundled transport."""
    transceivers = pc.getTransceivers()
    if not transceivers:
        return
    first = transceivers[0]
    if candidate is not None:
        # Everything is bundled on the first m-line's transport; aiortc ignores
        # candidates addressed to bundled m-lines, so address them to the first.
        candidate.sdpMid = first.mid
        candidate.sdpMLineIndex = 0
    try:
        await pc.addIceCandidate(candidate)
    except ValueError as exc:
        # aioice refuses candidates after end-of-candidates; harmless.
        logger.debug("candidate ignored: %s", exc)
