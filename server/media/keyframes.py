"""Recognising the first packet of a keyframe in VP8 and H.264 RTP payloads.

A subscriber that joins or recovers can only decode from a keyframe, so the
forwarder starts each subscriber's video at the packet this module recognises.
Only payload headers are read; nothing is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def vp8_is_keyframe_start(payload: bytes) -> bool:
    """True if ``payload`` starts a VP8 keyframe (RFC 7741: S=1, PID=0, P=0)."""
    if len(payload) < 1:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit clear, or partition id != 0
        return False
    offset = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            offset += 1
    if len(payload) <= offset:
        return False
    # VP8 payload header: the low bit of the first byte is the inverse keyframe flag.
    return not payload[offset] & 0x01


def h264_is_keyframe_start(payload: bytes) -> bool:
    """True if ``payload`` carries an SPS or the start of an IDR slice (RFC 6184)."""
    if len(payload) < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_STAP_A:
        offset = 1
        while offset + 2 < len(payload):
            size = (payload[offset] << 8) | payload[offset + 1]
            if payload[offset + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            offset += 2 + size
        return False
    if nal_type == _H264_FU_A:
        if len(payload) < 2:
            return False
        fu_header = payload[1]
        return bool(fu_header & 0x80) and (fu_header & 0x1F) in (_H264_IDR, _H264_SPS)
    return False


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from the first packet of a VP8 keyframe (RFC 6386 9.1), or None.

    Called only for packets :func:`vp8_is_keyframe_start` accepted, so it costs
    nothing per ordinary packet.
    """
    if len(payload) < 1:
        return None
    offset = 1
    if payload[0] & 0x80:
        if len(payload) < 2:
            return None
        ext = payload[1]
        offset = 2
        if ext & 0x80:
            if len(payload) <= offset:
                return None
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:
            offset += 1
        if ext & 0x30:
            offset += 1
    # 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height.
    header = payload[offset : offset + 10]
    if len(header) < 10 or header[3:6] != b"\x9d\x01\x2a":
        return None
    width = (header[6] | header[7] << 8) & 0x3FFF
    height = (header[8] | header[9] << 8) & 0x3FFF
    return (width, height) if width and height else None


def _never(payload: bytes) -> bool:
    return False


def keyframe_detector(codec_name: str) -> Callable[[bytes], bool]:
    """The keyframe test for a codec name (audio codecs get one that is always False)."""
    name = codec_name.lower()
    if name == "vp8":
        return vp8_is_keyframe_start
    if name == "h264":
        return h264_is_keyframe_start
    return _never
