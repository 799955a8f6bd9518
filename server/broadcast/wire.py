"""The datagrams between a room's owner node and its broadcast worker.

One unix datagram socket pair joins them (the worker's end is passed as an inherited
file descriptor). Each datagram starts with one byte naming its kind:

* ``P`` node → worker: one RTP packet of a selected track, reduced to what the
  depacketizer needs: slot (1 byte), sequence number, timestamp, SSRC, marker, payload.
  SRTP is already removed and RTX unwrapped by the SFU's receiver, so this costs the
  SFU one ``send`` per packet and no encryption (an aiortc subscriber would cost a
  DTLS/SRTP context and the per-packet protect on top).
* ``S`` node → worker: the programme (JSON, see :class:`server.broadcast.programme.Programme`).
* ``K`` worker → node: the worker needs a keyframe on a slot (start, loss, decode error).
* ``R`` worker → node: progress report (JSON: frames encoded, CPU seconds used).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from aiortc.rtp import RtpPacket

PACKET = b"P"
STATE = b"S"
KEYFRAME = b"K"
REPORT = b"R"

#: kind, slot, sequence number, timestamp, SSRC, marker.
_PACKET_HEADER = struct.Struct("!cBHII?")
#: The largest datagram either side sends (a programme JSON is far below this).
MAX_DATAGRAM = 65536
#: Socket buffers asked for on both ends: about a second of two HD video tracks.
SOCKET_BUFFER = 4 * 1024 * 1024


def pack_packet(slot: int, packet: RtpPacket) -> bytes:
    """One RTP packet for the worker (header fields it needs, then the payload)."""
    return (
        _PACKET_HEADER.pack(
            PACKET, slot, packet.sequence_number, packet.timestamp, packet.ssrc, packet.marker
        )
        + packet.payload
    )


def unpack_packet(datagram: bytes) -> tuple[int, RtpPacket]:
    """The slot and the packet of a ``P`` datagram."""
    _, slot, seq, timestamp, ssrc, marker = _PACKET_HEADER.unpack_from(datagram)
    packet = RtpPacket(
        marker=int(marker),
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=datagram[_PACKET_HEADER.size :],
    )
    return slot, packet


def pack_json(kind: bytes, body: dict[str, Any]) -> bytes:
    """A JSON message of the given kind."""
    return kind + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def unpack_json(datagram: bytes) -> dict[str, Any]:
    """The JSON body of an ``S`` or ``R`` datagram (an empty dict if it is not an object)."""
    body = json.loads(datagram[1:].decode())
    return body if isinstance(body, dict) else {}


def pack_keyframe(slot: int) -> bytes:
    """Ask the node for a keyframe on ``slot``."""
    return KEYFRAME + bytes([slot])
