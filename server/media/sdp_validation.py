"""Checking SDP from clients before aiortc sees it.

aiortc's parser asserts and raises on bad input, and ``setRemoteDescription``
can fail half-way, after it has created transceivers. Validating size, shape
and the attributes aiortc relies on first means a bad description raises
:class:`MediaError` ("bad_sdp") and leaves no state behind.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .errors import MediaError

logger = logging.getLogger(__name__)

_MID_RE = re.compile(r"^[A-Za-z0-9_.\-~]{1,32}$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIRECTIONS = frozenset(aiortc_sdp.DIRECTIONS)
_MAX_LINE = 4096


@dataclass(frozen=True)
class MediaSection:
    """What the media layer needs to know about one m-line of a remote description."""

    index: int
    kind: str
    mid: str
    direction: str
    port: int
    codecs: tuple[RTCRtpCodecParameters, ...]

    @property
    def remote_sends(self) -> bool:
        """True if the remote end sends media on this m-line."""
        return self.port != 0 and self.direction in ("sendonly", "sendrecv")

    @property
    def remote_receives(self) -> bool:
        """True if the remote end accepts media on this m-line."""
        return self.port != 0 and self.direction in ("recvonly", "sendrecv")


@dataclass(frozen=True)
class ValidatedSdp:
    """A remote description that passed :func:`validate_sdp`."""

    type: str
    text: str
    media: tuple[MediaSection, ...]


def _bad(message: str) -> MediaError:
    return MediaError("bad_sdp", message)


def validate_sdp(text: object, *, sdp_type: str, max_bytes: int, max_m_lines: int) -> ValidatedSdp:
    """Parse and check a remote ``offer`` or ``answer``; raise MediaError("bad_sdp")."""
    if not isinstance(text, str):
        raise _bad("SDP must be a string")
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise _bad(f"SDP is {size} bytes, the limit is {max_bytes}")
    if not text.strip():
        raise _bad("SDP is empty")
    if _CONTROL_RE.search(text):
        raise _bad("SDP contains control characters")
    lines = text.splitlines()
    if any(len(line) > _MAX_LINE for line in lines):
        raise _bad(f"SDP has a line longer than {_MAX_LINE} characters")
    if not lines[0].startswith("v=0"):
        raise _bad("SDP must start with v=0")
    m_lines = sum(1 for line in lines if line.startswith("m="))
    if m_lines == 0:
        raise _bad("SDP has no media section")
    if m_lines > max_m_lines:
        raise _bad(f"SDP has {m_lines} media sections, the limit is {max_m_lines}")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises assorted errors (and asserts)
        logger.debug("SDP parse failed: %r", exc)
        raise _bad("SDP could not be parsed") from None

    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    bundled = set(bundle.items) if bundle else set()
    seen_mids: set[str] = set()
    sections = []
    for index, media in enumerate(description.media):
        where = f"m-line {index}"
        if media.kind not in ("audio", "video"):
            raise _bad(f"{where}: only audio and video are supported, not {media.kind!r}")
        if "RTP" not in media.profile:
            raise _bad(f"{where}: unsupported profile {media.profile!r}")
        mid = media.rtp.muxId
        if not mid or not _MID_RE.match(mid):
            raise _bad(f"{where}: missing or invalid a=mid")
        if mid in seen_mids:
            raise _bad(f"{where}: duplicate mid {mid!r}")
        seen_mids.add(mid)
        direction = media.direction or "sendrecv"
        if direction not in _DIRECTIONS:
            raise _bad(f"{where}: invalid direction")
        if media.port != 0:
            ice, dtls = media.ice, media.dtls
            if mid not in bundled:
                raise _bad(f"{where}: BUNDLE is required")
            if ice is None or not ice.usernameFragment or not ice.password:
                raise _bad(f"{where}: ICE ufrag/pwd missing")
            if dtls is None or not dtls.fingerprints:
                raise _bad(f"{where}: DTLS fingerprint missing")
            if not media.rtcp_mux:
                raise _bad(f"{where}: rtcp-mux is required")
            if sdp_type == "answer" and dtls.role not in ("client", "server"):
                raise _bad(f"{where}: an answer must have a=setup active or passive")
        sections.append(
            MediaSection(
                index=index,
                kind=media.kind,
                mid=mid,
                direction=direction,
                port=media.port,
                codecs=tuple(media.rtp.codecs),
            )
        )
    return ValidatedSdp(type=sdp_type, text=text, media=tuple(sections))
