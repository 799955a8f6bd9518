"""The Socket.IO packet class the server sends with: the same binary check as python-socketio's."""

from __future__ import annotations

from typing import Any

import socketio
from hypothesis import given
from hypothesis import strategies as st

from signaling.server import RoomPacket, RoomSocketServer

payloads = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(data=payloads)
def test_the_binary_check_agrees_with_python_socketio(data: Any) -> None:
    assert RoomPacket.data_is_binary(data) == socketio.packet.Packet.data_is_binary(data)


def test_bytes_deep_in_a_payload_still_go_as_an_attachment() -> None:
    packet = RoomPacket(socketio.packet.EVENT, data=["snapshot", {"a": [{"b": [b"\x00"]}]}])
    assert packet.packet_type == socketio.packet.BINARY_EVENT
    encoded = packet.encode()
    assert encoded[1:] == [b"\x00"]
    assert RoomPacket(socketio.packet.ACK, data=[{"ok": True}], id=1).packet_type == (
        socketio.packet.ACK
    )


def test_the_room_server_sends_its_packets() -> None:
    server = RoomSocketServer(join_timeout=1.0, is_joined=lambda sid: True, async_mode="aiohttp")
    assert server.packet_class is RoomPacket
