"""A jitter-buffer replacement that hands each received RTP packet to a forwarder.

aiortc's RTCRtpReceiver calls ``jitter_buffer.add(packet)`` after SRTP
decryption, RTX unwrapping, NACK generation and statistics, and decodes
whatever frame the jitter buffer returns. The tap returns no frame, so the
server never decodes, and forwards the packet immediately instead of waiting
for a frame to complete (no jitter-buffer latency).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

PacketHandler = Callable[[RtpPacket], None]


class PacketTap:
    """Installed in place of a receiver's jitter buffer (see aiortc_internals)."""

    def __init__(self, handler: PacketHandler | None = None) -> None:
        self.handler = handler
        self.packets = 0
        self.errors = 0

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """Forward ``packet``; never request a PLI, never return a frame to decode."""
        self.packets += 1
        handler = self.handler
        if handler is not None:
            try:
                handler(packet)
            except Exception:
                # Last line of defence: an exception here would end aiortc's
                # receive loop, i.e. the publisher's whole connection.
                self.errors += 1
                if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, 8th ... time
                    logger.exception("packet handler failed (%d times)", self.errors)
        return False, None
