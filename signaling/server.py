"""RoomSocketServer: python-socketio's server, closed to what the protocol does not allow.

* An event named like a reserved Socket.IO event (`connect`, `disconnect`...)
  or not named by a string never reaches a handler: python-socketio would pass
  an event named `disconnect` to `on_disconnect`, letting a client fake its own
  departure and keep listening invisibly. It gets `unknown_event`.
* An Engine.IO connection must have joined a room within `join_timeout`
  (it opened `/room`, connected with a valid token and sent `join`); otherwise
  it is closed, so idle sockets cannot pile up until the node runs out of file
  descriptors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio

from signaling.events import MAX_EVENT_NAME, NAMESPACE, error_ack

logger = logging.getLogger(__name__)

#: Names python-socketio and its clients treat specially (never a client's event).
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "message", "__disconnect_final"}
)


class RoomPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, with its check for binary data made cheap.

    Every packet sent is first searched for bytes (sent as attachments). The stock
    search recurses with a list and a `reduce` at every level, over all of the
    payload: for a join's ack, which carries the room's snapshot (roster,
    participants, timeline), it was a tenth of a node's CPU in a run of joins
    (py-spy). This is the same answer from an explicit stack, stopping at the first
    bytes.
    """

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """Whether `data` holds bytes anywhere in its lists and dicts."""
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, (bytes, bytearray)):
                return True
        return False


class RoomSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """The `/room` Socket.IO server of one node."""

    def __init__(
        self, *, join_timeout: float, is_joined: Callable[[str], bool], **kwargs: Any
    ) -> None:
        kwargs.setdefault("serializer", RoomPacket)
        super().__init__(**kwargs)
        self.join_timeout = join_timeout
        self._is_joined = is_joined
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        #: Told of every event refused here, with the ack's code (metrics).
        self.on_event_refused: Callable[[str], None] | None = None
        #: Connections that may stay without joining a room: (namespace, is it allowed?)
        #: — an operator's `/control` socket.
        self.stay_unjoined: tuple[str, Callable[[str], bool]] | None = None

    @property
    def connection_count(self) -> int:
        """Engine.IO connections open on this node."""
        return len(self.environ)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        name = data[0] if isinstance(data, list) and data else None
        if not isinstance(name, str) or name in RESERVED_EVENTS:
            shown = name[:MAX_EVENT_NAME] if isinstance(name, str) else type(name).__name__
            logger.info("refused reserved or malformed event %r", shown)
            if self.on_event_refused is not None:
                self.on_event_refused("unknown_event")
            if id is not None:
                ack = error_ack("unknown_event", f"unknown event {shown!r}")
                await self._send_packet(
                    eio_sid,
                    self.packet_class(socketio.packet.ACK, namespace=namespace, id=id, data=[ack]),
                )
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        result = await super()._handle_eio_connect(eio_sid, environ)
        loop = asyncio.get_running_loop()
        self._timers[eio_sid] = loop.call_later(self.join_timeout, self._check_joined, eio_sid)
        return result

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        timer = self._timers.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()
        await super()._handle_eio_disconnect(eio_sid, reason)

    def _check_joined(self, eio_sid: str) -> None:
        self._timers.pop(eio_sid, None)
        if eio_sid not in self.environ:
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        if sid is not None and self._is_joined(sid):
            return
        if self.stay_unjoined is not None:
            namespace, allowed = self.stay_unjoined
            other = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if other is not None and allowed(other):
                return
        logger.info("closing a connection that did not join within %ss", self.join_timeout)
        task = asyncio.get_running_loop().create_task(self.eio.disconnect(eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
