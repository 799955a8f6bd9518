"""RoomNamespace: the `/room` Socket.IO namespace — authentication, the connection's
state machine, validation, and this node's side of every room its sockets are in.

A client connects with `auth={"token": ...}`; the token is verified, and the
admission rules checked against the room's last written state, before the
connection is accepted. It then sends `join`; the room's owner (on this node
or another) admits it and the ack carries the snapshot. Every later event is
rate-limited and validated here, then relayed to the owner with the caller's
identity, role, room and venue taken from the verified token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import socketio

import server.log_context as log_context
from server.catalog import RoomCatalog
from server.cluster.bus import Bus
from server.cluster.router import RoomRouter
from server.ratelimit import TokenBucket
from server.rooms import acks
from server.rooms.errors import RoomError
from server.rooms.models import Caller, NodeRef
from server.rooms.server_events import LeaveReason, LobbyClosed, Reconnect
from server.rooms.tokens import TokenSigner
from signaling.connection import Connection, InvalidTransition, SocketState
from signaling.events import NAMESPACE, PayloadError, measure, parse_payload

logger = logging.getLogger(__name__)

#: Largest `auth` payload accepted at connect (it only carries a token).
MAX_AUTH_BYTES = 4096
#: A connection that left is closed this long after its `leave` ack (time for the ack to go).
CLOSE_AFTER_LEAVE_SECONDS = 1.0
#: How long a connection may wait in a session's lobby before it is closed.
LOBBY_WAIT_SECONDS = 600.0


#: The events a connection waiting in the lobby may receive.
LOBBY_EVENTS = frozenset({"admitted", "lobby_closed", "replaced"})


#: A participant's ICE servers (the browser's `RTCIceServer` list) and when they expire.
IceServers = Callable[[str], tuple[list[dict[str, Any]], int | None]]


def room_channel(room_id: str) -> str:
    """The Socket.IO room of this node's sockets in a consultation room."""
    return f"room:{room_id}"


def _refusal(code: str, message: str) -> Exception:
    """A connect refusal; clients see `message` and `data.code` in their connect_error."""
    refusal: Exception = socketio.exceptions.ConnectionRefusedError(message, {"code": code})
    return refusal


class RoomNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Socket.IO handlers of the consultation protocol (docs/protocol.md)."""

    def __init__(
        self,
        *,
        node_id: str,
        max_participants: int,
        max_connections: int,
        event_rate: float = 20.0,
        event_burst: float = 40.0,
        ice_servers: IceServers = lambda identity: ([], None),
    ) -> None:
        super().__init__(NAMESPACE)
        self.ice_servers = ice_servers
        self.node_id = node_id
        self.max_participants = max_participants
        self.max_connections = max_connections
        self.event_rate = event_rate
        self.event_burst = event_burst
        self.connections: dict[str, Connection] = {}
        self.lobby_wait_seconds = LOBBY_WAIT_SECONDS
        self._router: RoomRouter | None = None
        self._bus: Bus | None = None
        self._catalog: RoomCatalog | None = None
        self._signer: TokenSigner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Told of every client event's ack and how long it took (metrics).
        self.on_event_done: Callable[[str, acks.Ack, float], None] | None = None
        #: Told of every connect: `ok` or the refusal's code (metrics).
        self.on_connect_done: Callable[[str], None] | None = None

    def attach(
        self, *, router: RoomRouter, bus: Bus, catalog: RoomCatalog, signer: TokenSigner
    ) -> None:
        """Connect the namespace to the node's parts (built after it, once Redis is up)."""
        self._router = router
        self._bus = bus
        self._catalog = catalog
        self._signer = signer

    @property
    def catalog(self) -> RoomCatalog:
        """Rooms' definitions and last written state, for checks at connect."""
        if self._catalog is None:
            raise RuntimeError("the namespace is not attached")
        return self._catalog

    @property
    def signer(self) -> TokenSigner:
        """Verifies join tokens."""
        if self._signer is None:
            raise RuntimeError("the namespace is not attached")
        return self._signer

    @property
    def router(self) -> RoomRouter:
        """The router to rooms' owners."""
        if self._router is None:
            raise RuntimeError("the namespace is not attached to a router")
        return self._router

    @property
    def bus(self) -> Bus:
        """The bus that brings rooms' broadcasts."""
        if self._bus is None:
            raise RuntimeError("the namespace is not attached to a bus")
        return self._bus

    def is_joined(self, sid: str) -> bool:
        """Whether the connection `sid` has joined its room (and not left), or waits in its
        lobby (bounded by its own timer): the never-joined timeout spares both."""
        connection = self.connections.get(sid)
        return connection is not None and connection.state in (
            SocketState.JOINED,
            SocketState.WAITING,
        )

    # --- connection life cycle ------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        """Verify the token and the admission rules; refuse with a reason otherwise."""
        try:
            accepted = await self._connect(sid, auth)
        except socketio.exceptions.ConnectionRefusedError as exc:
            if self.on_connect_done is not None:
                data = exc.error_args.get("data") if isinstance(exc.error_args, dict) else None
                self.on_connect_done(str((data or {}).get("code", "refused")))
            raise
        if self.on_connect_done is not None:
            self.on_connect_done("ok")
        return accepted

    async def _connect(self, sid: str, auth: Any) -> bool:
        if len(self.connections) >= self.max_connections:
            raise _refusal("server_full", "this server is full; try again shortly")
        if not isinstance(auth, dict):
            raise _refusal("token_missing", 'connect with auth={"token": "..."}')
        if measure(auth) > MAX_AUTH_BYTES:
            raise _refusal("token_invalid", f"the auth payload exceeds {MAX_AUTH_BYTES} bytes")
        try:
            claims = self.signer.verify(auth.get("token"))
            await self.catalog.check_token(claims)
        except RoomError as exc:
            raise _refusal(exc.code, exc.message) from exc
        except Exception as exc:
            logger.warning("connect of %s refused: state unreadable (%s)", sid, exc)
            raise _refusal(
                "unavailable", "the server cannot check your token now; try again"
            ) from exc
        caller = Caller(**claims.invitee.model_dump(), session=sid, node=self.node_id)
        limits = TokenBucket(self.event_rate, self.event_burst)
        self.connections[sid] = Connection(claims=claims, caller=caller, limits=limits)
        return True

    async def on_disconnect(self, sid: str, reason: str = "") -> None:
        """The connection closed: the room hears that the participant left (unless it was
        handed off to another node, or it never finished joining — the join handles that)."""
        connection = self.connections.pop(sid, None)
        if connection is None:
            return
        previous = connection.move(SocketState.CLOSED)
        if connection.lobby_timer is not None:
            connection.lobby_timer.cancel()
        if previous is SocketState.WAITING and not connection.handed_off:
            # It no longer waits: the hosts' lobby list drops it.
            self._spawn(self.router.leave(connection.room_id, connection.caller, "left"))
            return
        if previous is not SocketState.JOINED:
            return
        await self._exit_room(connection)
        if connection.handed_off:
            return
        client_left = reason == socketio.AsyncServer.reason.CLIENT_DISCONNECT
        why: LeaveReason = "left" if client_left else "connection_lost"
        # Not awaited here: python-socketio runs this inline in its transport's teardown.
        self._spawn(self.router.leave(connection.room_id, connection.caller, why))

    # --- events ---------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route client events through limits and validation (RoomSocketServer keeps
        reserved names out, so `connect`/`disconnect` here are the real ones)."""
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        payload = args[1] if len(args) > 1 else None
        started = time.perf_counter()
        connection = self.connections.get(sid)
        if connection is not None:
            # Each event runs in its own task: these name the room and caller in its logs.
            log_context.room.set(connection.room_id)
            log_context.identity.set(connection.caller.identity)
        ack = await self._answer(sid, event, payload)
        if event in ("join", "leave"):
            outcome = "ok" if acks.is_ok(ack) else (ack.get("error") or {}).get("code")
            logger.info("%s of %s: %s", event, sid, outcome, extra={"event": event})
        if self.on_event_done is not None:
            self.on_event_done(event, ack, time.perf_counter() - started)
        return ack

    async def _answer(self, sid: str, event: str, payload: Any) -> acks.Ack:
        try:
            return await self._on_event(sid, event, payload)
        except RoomError as exc:
            return acks.refusal(exc)
        except PayloadError as exc:
            return acks.error(exc.code, exc.message)
        except Exception:
            logger.exception("event %s from %s failed", event[:64], sid)
            return acks.error("internal_error", "the server could not handle this event")

    async def _on_event(self, sid: str, event: str, payload: Any) -> acks.Ack:
        connection = self.connections.get(sid)
        if connection is None:
            return acks.error("not_connected", "connect with a valid token first")
        if not connection.limits.allow():
            return acks.error("rate_limited", "too many events; slow down")
        request = parse_payload(event, payload)
        if event == "join":
            ack = await self._join(sid, connection)
            if acks.is_ok(ack):
                self._add_ice_servers(ack, connection)
            return ack
        if event == "refresh_ice_servers":
            if connection.state is not SocketState.JOINED:
                return acks.error("not_joined", "send join first")
            return self._add_ice_servers(acks.ok(), connection)
        if event == "leave":
            return await self._leave(sid, connection)
        if connection.state is not SocketState.JOINED:
            return acks.error("not_joined", "send join first")
        return await self.router.event(connection.room_id, connection.caller, event, request)

    def _add_ice_servers(self, ack: acks.Ack, connection: Connection) -> acks.Ack:
        """The participant's ICE servers (fresh TURN credentials) and their expiry."""
        servers, expires_at = self.ice_servers(connection.caller.identity)
        ack["ice_servers"] = servers
        ack["ice_servers_expire_at"] = expires_at
        return ack

    async def _join(self, sid: str, connection: Connection) -> acks.Ack:
        was_waiting = connection.state is SocketState.WAITING
        try:
            connection.move(SocketState.JOINING)
        except InvalidTransition:
            if connection.state is SocketState.LEFT:
                return acks.error("not_connected", "this connection left; connect again")
            return acks.error("already_joined", "this connection has already joined")
        room_id = connection.room_id
        # In the room's broadcasts before the owner takes the snapshot, so nothing that
        # happens in between is missed; clients replay events that arrive before the ack.
        await self.enter_room(sid, room_channel(room_id))
        await self.bus.join_room(room_id)
        try:
            ack = await self.router.join(room_id, connection.caller, connection.claims.incarnation)
        except BaseException:
            ack = acks.error("internal_error", "the server could not handle this event")
            raise
        finally:
            if connection.state is SocketState.CLOSED:
                # Closed while joining: undo what the join did, whatever its outcome.
                await self._exit_room(connection)
                if acks.is_ok(ack):
                    await self.router.leave(room_id, connection.caller, "join_abandoned")
        if connection.state is SocketState.CLOSED:
            return ack
        if acks.is_ok(ack):
            connection.move(SocketState.JOINED)
            if connection.lobby_timer is not None:
                connection.lobby_timer.cancel()
                connection.lobby_timer = None
        elif ack.get("error", {}).get("code") == "in_lobby":
            # Waits, connected but not joined: no room events until admitted.
            connection.move(SocketState.WAITING)
            await self._exit_room(connection)
            if connection.lobby_timer is None:
                connection.lobby_timer = asyncio.get_running_loop().call_later(
                    self.lobby_wait_seconds, lambda: self._spawn(self._lobby_timeout(sid))
                )
        else:
            connection.move(SocketState.CONNECTED)
            await self._exit_room(connection)
            if was_waiting:
                # Its never-joined timeout has passed: a refused connection is not left idle.
                self._spawn(self._close(sid))
        return ack

    async def _lobby_timeout(self, sid: str) -> None:
        """A connection waited in the lobby too long: tell it, then close it."""
        connection = self.connections.get(sid)
        if connection is None or connection.state is not SocketState.WAITING:
            return
        notice = LobbyClosed(reason="timeout").model_dump(mode="json")
        await self.emit("lobby_closed", notice, to=sid)
        await self.disconnect(sid)

    async def _leave(self, sid: str, connection: Connection) -> acks.Ack:
        try:
            connection.move(SocketState.LEFT)
        except InvalidTransition:
            return acks.error("not_joined", "send join first")
        await self._exit_room(connection)
        await self.router.leave(connection.room_id, connection.caller, "left")
        # A connection that left has nothing more to do here; the client closes it too.
        loop = asyncio.get_running_loop()
        loop.call_later(CLOSE_AFTER_LEAVE_SECONDS, lambda: self._spawn(self._close(sid)))
        return acks.ok()

    async def _close(self, sid: str) -> None:
        if sid in self.connections:
            await self.disconnect(sid)

    async def _exit_room(self, connection: Connection) -> None:
        """Stop the room's broadcasts to this connection (and to this node, if it was the last)."""
        room_id = connection.room_id
        sid = connection.caller.session
        if connection.state is not SocketState.CLOSED:
            await self.leave_room(sid, room_channel(room_id))
        await self.bus.leave_room(room_id)
        if not any(c.room_id == room_id and c.in_room for c in self.connections.values()):
            self.router.forget_room(room_id)

    # --- this node's sockets, for the cluster (server.cluster.local_sockets) ----------

    async def deliver_room(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send a room's event to this node's sockets in the room."""
        await self.emit(event, payload, room=room_channel(room_id))

    async def deliver_session(self, session: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to one of this node's sockets, if it is in its room."""
        connection = self.connections.get(session)
        if connection is None or connection.handed_off:
            return
        waiting = connection.state is SocketState.WAITING
        if connection.in_room or (waiting and event in LOBBY_EVENTS):
            await self.emit(event, payload, to=session)

    async def close_session(self, session: str, reason: str) -> None:
        """Close one of this node's sockets."""
        if session in self.connections:
            logger.info("closing %s: %s", session, reason)
            await self.disconnect(session)

    def sessions_in(self, room_id: str) -> list[Caller]:
        """This node's sockets that joined the room."""
        return [
            c.caller
            for c in self.connections.values()
            if c.room_id == room_id and c.state is SocketState.JOINED
        ]

    def joining_in(self, room_id: str) -> list[str]:
        """Sessions of this node's sockets whose join to the room is in flight, or that wait
        in its lobby (the owner keeps them, and admits none of them here)."""
        return [
            sid
            for sid, c in self.connections.items()
            if c.room_id == room_id and c.state in (SocketState.JOINING, SocketState.WAITING)
        ]

    def rooms(self) -> list[str]:
        """Rooms in which this node holds joined sockets."""
        return sorted(
            {c.room_id for c in self.connections.values() if c.state is SocketState.JOINED}
        )

    async def quiesce(self) -> None:
        """The node is draining: its sockets get no more room events (they will rejoin
        elsewhere, with a fresh snapshot; a `media_moved` now would only make them
        rebuild their media twice)."""
        for sid, connection in list(self.connections.items()):
            connection.handed_off = True
            if connection.in_room:
                await self.leave_room(sid, room_channel(connection.room_id))

    async def hand_off(self, nodes: list[NodeRef]) -> None:
        """Tell every socket to reconnect to one of `nodes`, then close it."""
        notice = Reconnect(reason="drain", nodes=nodes).model_dump(mode="json")
        for sid, connection in list(self.connections.items()):
            connection.handed_off = True
            if connection.in_room:
                await self.emit("reconnect", notice, to=sid)
            await self.disconnect(sid)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for departures still being reported (bounded by the router's budget)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
