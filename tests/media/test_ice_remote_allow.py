"""Incoming ICE checks from outside the remote allow-list are dropped, not answered.

Without this, aioice answers any authenticated check and learns its source as a
peer-reflexive candidate, then sends to it — e.g. Chromium checking from this
machine's external address towards our 127.0.0.1 candidate. The check is fed
straight into the connection here, so no packet leaves loopback.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import aioice
from aioice import stun

from server.media.aiortc_internals import gather_only_on


class RecordingProtocol:
    """Stands in for aioice's StunProtocol: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, tuple[str, int]]] = []

    def send_stun(self, message: Any, addr: tuple[str, int]) -> None:
        self.sent.append((message, addr))


def _check(connection: aioice.Connection) -> stun.Message:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{connection.local_username}:remote"
    request.attributes["PRIORITY"] = 1234
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(connection.local_password.encode("utf8"))
    return request


async def test_checks_from_outside_the_allow_list_are_dropped() -> None:
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    connection = aioice.Connection(ice_controlling=False)
    try:
        with gather_only_on(("127.0.0.1",), allow):
            await connection.gather_candidates()
        protocol = RecordingProtocol()
        connection.request_received(_check(connection), ("192.0.2.2", 40000), protocol)  # type: ignore[arg-type]
        assert protocol.sent == [], "a check from outside the allow-list was answered"
        connection.request_received(_check(connection), ("127.0.0.1", 40000), protocol)  # type: ignore[arg-type]
        assert [addr for _, addr in protocol.sent] == [("127.0.0.1", 40000)]
    finally:
        await connection.close()


async def test_without_an_allow_list_checks_are_answered_as_before() -> None:
    connection = aioice.Connection(ice_controlling=False)
    try:
        with gather_only_on(("127.0.0.1",)):
            await connection.gather_candidates()
        protocol = RecordingProtocol()
        connection.request_received(_check(connection), ("127.0.0.2", 40000), protocol)  # type: ignore[arg-type]
        assert [addr for _, addr in protocol.sent] == [("127.0.0.2", 40000)]
    finally:
        await connection.close()
