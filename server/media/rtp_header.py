"""A subscriber's prebuilt RTP header, patched in place for each forwarded packet.

Everything in a forwarded packet's header is fixed for the life of one
subscriber's sender except five fields: the marker bit, the sequence number,
the timestamp and one header-extension value (abs-send-time for video, the
RFC 6464 audio level for audio). The header is serialized once, with aiortc's
own extension layout, and each packet costs two ``struct.pack_into`` calls
instead of a new ``RtpPacket`` and aiortc's generic ``serialize``.
"""

from __future__ import annotations

import struct
from typing import Final

from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

#: Byte 1 (marker + payload type), sequence number, timestamp.
_MARKER_SEQ_TS: Final = struct.Struct("!BHI")
#: One 32-bit word ending with the changing extension value (see OutgoingHeader).
_EXT_WORD: Final = struct.Struct("!I")


class OutgoingHeader:
    """The header of one outgoing RTP stream (one subscriber's sender).

    ``extension`` names the per-packet header extension the stream carries:
    ``"abs_send_time"`` (video, 24-bit NTP-derived send time, which receivers
    use for bandwidth estimation and REMB) or ``"audio_level"`` (audio,
    ``V|level`` as received from the publisher, which receivers use for their
    own speaker detection). The extension is only written if it was
    negotiated; the MID extension is constant and written once.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        payload_type: int,
        mid: str | None,
        extensions_map: HeaderExtensionsMap,
        extension: str,
    ) -> None:
        self.payload_type = payload_type & 0x7F
        template = self._serialize(ssrc, mid, extensions_map, extension, 0)
        # Where the changing extension value sits: the bytes that differ between
        # two serializations with different values (nowhere if not negotiated).
        other = self._serialize(ssrc, mid, extensions_map, extension, 0xFFFFFF)
        changed = [i for i, (a, b) in enumerate(zip(template, other, strict=True)) if a != b]
        self.header = bytearray(template)
        self.has_extension = bool(changed)
        self._word_offset = 0
        self._word_prefix = 0
        self._value_mask = 0
        if changed:
            first, last = changed[0], changed[-1]
            width = last - first + 1
            if width > 3 or first < 16:
                raise RuntimeError(f"unexpected {extension} layout in {template.hex()}")
            # Write one aligned-free 32-bit word ending at the value; the bytes before
            # the value in that word are constant (extension ids/lengths) and kept.
            self._word_offset = last + 1 - 4
            self._word_prefix = int.from_bytes(template[self._word_offset : first], "big") << (
                8 * width
            )
            self._value_mask = (1 << (8 * width)) - 1

    @staticmethod
    def _serialize(
        ssrc: int, mid: str | None, extensions_map: HeaderExtensionsMap, extension: str, value: int
    ) -> bytes:
        packet = RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=ssrc)
        extensions = HeaderExtensions()
        extensions.mid = mid
        if extension == "abs_send_time":
            extensions.abs_send_time = value & 0xFFFFFF
        elif extension == "audio_level":
            extensions.audio_level = (bool(value & 0x80), value & 0x7F)
        else:
            raise ValueError(f"unknown per-packet extension {extension!r}")
        packet.extensions = extensions
        return packet.serialize(extensions_map)

    def build(self, marker: int, sequence_number: int, timestamp: int, value: int) -> bytearray:
        """Patch the header for one packet and return it (the same bytearray each time).

        ``value`` is the extension value (24-bit abs-send-time, or the audio
        level byte ``V << 7 | level``); the caller appends the payload.
        """
        header = self.header
        _MARKER_SEQ_TS.pack_into(
            header, 1, (marker << 7) | self.payload_type, sequence_number, timestamp
        )
        if self.has_extension:
            _EXT_WORD.pack_into(
                header, self._word_offset, self._word_prefix | (value & self._value_mask)
            )
        return header

    def layout(self) -> tuple[bytes, int, int, int]:
        """The template and where the extension value goes, for the compiled fan-out.

        ``(header, word_offset, word_prefix, value_mask)``: what :meth:`build`
        writes is ``word_prefix | (value & value_mask)`` as a 32-bit word at
        ``word_offset`` (``value_mask`` is 0 when there is no extension).
        """
        mask = self._value_mask if self.has_extension else 0
        return bytes(self.header), self._word_offset, self._word_prefix, mask


def audio_level_byte(level: tuple[bool, int] | None) -> int:
    """The RFC 6464 byte (``V << 7 | level``) for aiortc's parsed audio level (None: silence)."""
    if level is None:
        return 127
    return (0x80 if level[0] else 0) | (level[1] & 0x7F)
