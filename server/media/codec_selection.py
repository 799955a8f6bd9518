"""Which codec a publisher sends, and the exact codec a subscriber is offered.

The server never transcodes, so a forwarded track has one codec end to end:
the publish answer accepts exactly one codec per m-line (the first of the
configured preferences that the client offers), and each subscriber transceiver
is restricted to that same codec (plus RTX for video) with setCodecPreferences.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiortc import RTCRtpSender
from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

logger = logging.getLogger(__name__)


def _h264_profile(parameters: dict[str, object]) -> object | None:
    # Absent profile-level-id means constrained baseline 3.1 (RFC 6184 default as
    # treated by browsers and aiortc).
    try:
        value = str(parameters.get("profile-level-id", "42e01f"))
        return aiortc_sdp.parse_h264_profile_level_id(value)[0]
    except ValueError:
        return None


def _compatible(capability: RTCRtpCodecCapability, codec: RTCRtpCodecParameters) -> bool:
    if capability.mimeType.lower() != codec.mimeType.lower():
        return False
    if capability.clockRate != codec.clockRate:
        return False
    if capability.mimeType.lower() == "video/h264":
        mode = str(codec.parameters.get("packetization-mode", "0"))
        cap_profile = _h264_profile(dict(capability.parameters))
        return (
            mode == "1"
            and cap_profile is not None
            and cap_profile == _h264_profile(dict(codec.parameters))
        )
    return True


def select_publish_codec(
    kind: str, offered: Sequence[RTCRtpCodecParameters], preferences: Sequence[str]
) -> RTCRtpCodecCapability | None:
    """The capability to accept for an offered m-line, or None if nothing fits."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    for name in preferences:
        for capability in capabilities:
            if capability.name.lower() != name.lower():
                continue
            if any(_compatible(capability, codec) for codec in offered):
                return capability
    return None


def capability_for(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    """aiortc's capability object equal to a negotiated codec (for setCodecPreferences)."""
    kind = codec.mimeType.split("/")[0].lower()
    for capability in RTCRtpSender.getCapabilities(kind).codecs:
        if _compatible(capability, codec):
            return capability
    raise ValueError(f"no capability matches {codec.mimeType}")


def preferences_for(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """Codec preferences that make a transceiver negotiate exactly ``codec`` (+ RTX)."""
    capability = capability_for(codec)
    if capability.mimeType.lower().startswith("audio/"):
        return [capability]
    return [capability, rtx_capability()]


def rtx_capability() -> RTCRtpCodecCapability:
    """aiortc's video RTX capability (retransmissions on their own SSRC)."""
    return next(c for c in RTCRtpSender.getCapabilities("video").codecs if c.name.lower() == "rtx")
