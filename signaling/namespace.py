"""RoomNamespace: the `/room` Socket.IO namespace — authentication, validation, rate limits.

A client connects with `auth={"token": ...}`; the token is verified and the
admission rules checked before the connection is accepted. It then sends
`join` and receives the snapshot in the ack. Every later event is measured,
rate-limited and validated here, then handed to the domain with the caller's
identity, role, room and venue taken from the verified token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from pydantic import BaseModel

from server.rooms.errors import RoomError
from server.rooms.models import LiveState, Participant
from server.rooms.service import ConsultationService
from server.rooms.tokens import JoinClaims
from server.state.store import StoreConflict
from signaling import events as ev
from signaling.notifier import room_channel
from signaling.ratelimit import ConnectionLimits

logger = logging.getLogger(__name__)

#: Largest `auth` payload accepted at connect (it only carries a token).
MAX_AUTH_BYTES = 4096

#: A client event's handler: (the caller's record, its room, the validated payload) -> ack.
Handler = Callable[[Participant, str, Any], Awaitable[dict[str, Any]]]


@dataclass
class Connection:
    """What this process knows about one Socket.IO connection."""

    claims: JoinClaims
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    joined: bool = False


def _refusal(code: str, message: str) -> Exception:
    """A connect refusal; clients see `message` and `data.code` in their connect_error."""
    refusal: Exception = socketio.exceptions.ConnectionRefusedError(message, {"code": code})
    return refusal


def _measure(payload: Any) -> int:
    try:
        return len(json.dumps(payload, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return ev.MAX_MESSAGE_BYTES + 1


class RoomNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Socket.IO handlers of the consultation protocol (docs/protocol.md)."""

    def __init__(
        self, service: ConsultationService, event_rate: float = 20.0, event_burst: float = 40.0
    ) -> None:
        super().__init__(ev.NAMESPACE)
        self.service = service
        self.event_rate = event_rate
        self.event_burst = event_burst
        self.connections: dict[str, Connection] = {}
        # Each client event: the domain call, and what its ack carries.
        self._handlers: dict[str, Handler] = {
            "raise_hand": lambda a, r, q: _live(service.raise_hand(a, r)),
            "lower_hand": lambda a, r, q: _live(service.lower_hand(a, r, q.identity)),
            "grant_floor": lambda a, r, q: _live(
                service.grant_floor(a, r, q.identity, q.time_limit_seconds)
            ),
            "revoke_floor": lambda a, r, q: _live(service.revoke_floor(a, r)),
            "next_speaker": lambda a, r, q: _live(service.next_speaker(a, r, q.time_limit_seconds)),
            "advance_agenda": lambda a, r, q: _live(service.advance_agenda(a, r, q.index)),
            "set_lock": lambda a, r, q: _live(service.set_locked(a, r, q.locked)),
            "request_mute": lambda a, r, q: _done(service.request_mute(a, r, q.identity, q.kind)),
            "remove_participant": lambda a, r, q: _done(service.remove(a, r, q.identity, q.reason)),
            "end_session": lambda a, r, q: _done(service.end_session(a, r)),
            "start_recording": lambda a, r, q: _model(
                "recording", service.host_start_recording(a, r)
            ),
            "stop_recording": lambda a, r, q: _model(
                "recording", service.host_stop_recording(a, r)
            ),
            "chat": lambda a, r, q: _model("entry", service.chat(a, r, q.text)),
            "media_state": lambda a, r, q: _model(
                "participant", service.set_media_state(a, r, q.audio_muted, q.video_muted)
            ),
            "publish_offer": self._publish_offer,
            "subscriber_answer": lambda a, r, q: _done(service.subscriber_answer(a, r, q.sdp)),
            "ice_candidate": lambda a, r, q: _done(
                service.ice_candidate(a, r, q.pc, q.candidate.model_dump(exclude_none=True))
            ),
            "media_restart": lambda a, r, q: _done(service.restart_media(a, r)),
        }

    # --- connection life cycle ------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        """Verify the token and the admission rules; refuse with a reason otherwise."""
        if not isinstance(auth, dict):
            raise _refusal("token_missing", 'connect with auth={"token": "..."}')
        if _measure(auth) > MAX_AUTH_BYTES:
            raise _refusal("token_invalid", f"the auth payload exceeds {MAX_AUTH_BYTES} bytes")
        try:
            claims = self.service.signer.verify(auth.get("token"))
            await self.service.check_admission(claims)
        except RoomError as exc:
            raise _refusal(exc.code, exc.message) from exc
        limits = ConnectionLimits(self.event_rate, self.event_burst)
        self.connections[sid] = Connection(claims=claims, limits=limits)
        return True

    async def on_disconnect(self, sid: str, reason: str = "") -> None:
        """Forget the connection; the room hears that the participant left."""
        connection = self.connections.pop(sid, None)
        if connection is None or not connection.joined:
            return
        why = (
            "left" if reason == socketio.AsyncServer.reason.CLIENT_DISCONNECT else "connection_lost"
        )
        claims = connection.claims
        try:
            await self.service.leave(claims.room, claims.invitee.identity, sid, why)
        except Exception:
            logger.exception("leave failed for %s in %s", claims.invitee.identity, claims.room)

    # --- events ---------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route every client event through measurement, limits and validation."""
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        payload = args[1] if len(args) > 1 else None
        try:
            return await self._dispatch(sid, event, payload)
        except RoomError as exc:
            return ev.error_ack(exc.code, exc.message)
        except ev.PayloadError as exc:
            return ev.error_ack(exc.code, exc.message)
        except StoreConflict:
            return ev.error_ack("busy", "the session is busy; try again")
        except Exception:
            logger.exception("event %s from %s failed", event[:64], sid)
            return ev.error_ack("internal_error", "the server could not handle this event")

    async def _dispatch(self, sid: str, event: str, payload: Any) -> dict[str, Any]:
        connection = self.connections.get(sid)
        if connection is None:
            return ev.error_ack("not_connected", "connect with a valid token first")
        if not connection.limits.allow(event):
            return ev.error_ack("rate_limited", "too many events; slow down")
        request = ev.parse_payload(event, payload, _measure(payload))
        claims = connection.claims
        if event == "join":
            return await self._join(sid, connection)
        if not connection.joined:
            return ev.error_ack("not_joined", "send join first")
        if event == "leave":
            connection.joined = False
            # Out of the room's broadcasts too: a participant who left hears nothing more.
            await self.leave_room(sid, room_channel(claims.room))
            await self.service.leave(claims.room, claims.invitee.identity, sid, "left")
            return ev.ok_ack()
        actor = await self.service.current_participant(claims.room, claims.invitee.identity, sid)
        return await self._handlers[event](actor, claims.room, request)

    async def _join(self, sid: str, connection: Connection) -> dict[str, Any]:
        if connection.joined:
            return ev.error_ack("already_joined", "this connection has already joined")
        # Enter the Socket.IO room before reading the snapshot, so nothing that
        # happens in between is missed; clients replay events that arrive before the ack.
        await self.enter_room(sid, room_channel(connection.claims.room))
        try:
            snapshot = await self.service.join(connection.claims, sid)
        except BaseException:
            await self.leave_room(sid, room_channel(connection.claims.room))
            raise
        connection.joined = True
        return ev.ok_ack(snapshot=snapshot.model_dump(mode="json"))

    async def _publish_offer(
        self, actor: Participant, room_id: str, req: ev.PublishOffer
    ) -> dict[str, Any]:
        answer = await self.service.publish(actor, room_id, req.sdp)
        return ev.ok_ack(sdp=answer)


async def _live(change: Awaitable[LiveState]) -> dict[str, Any]:
    """Ack of an event that changes the live state: the state after it."""
    return ev.ok_ack(live=(await change).model_dump(mode="json"))


async def _model(key: str, result: Awaitable[BaseModel]) -> dict[str, Any]:
    """Ack carrying the record the event produced (a chat entry, a recording...)."""
    return ev.ok_ack(**{key: (await result).model_dump(mode="json")})


async def _done(action: Awaitable[None]) -> dict[str, Any]:
    """Ack of an event with nothing to return."""
    await action
    return ev.ok_ack()
