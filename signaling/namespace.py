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

from server.rooms.errors import RoomError
from server.rooms.models import Participant
from server.rooms.service import ConsultationService
from server.rooms.tokens import JoinClaims
from server.state.store import StoreConflict
from signaling import events as ev
from signaling.notifier import room_channel
from signaling.ratelimit import ConnectionLimits

logger = logging.getLogger(__name__)

#: Largest `auth` payload accepted at connect (it only carries a token).
MAX_AUTH_BYTES = 4096

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
        self._handlers: dict[str, Handler] = {
            "raise_hand": self._raise_hand,
            "lower_hand": self._lower_hand,
            "grant_floor": self._grant_floor,
            "revoke_floor": self._revoke_floor,
            "next_speaker": self._next_speaker,
            "advance_agenda": self._advance_agenda,
            "set_lock": self._set_lock,
            "request_mute": self._request_mute,
            "remove_participant": self._remove_participant,
            "end_session": self._end_session,
            "start_recording": self._start_recording,
            "stop_recording": self._stop_recording,
            "chat": self._chat,
            "media_state": self._media_state,
            "publish_offer": self._publish_offer,
            "subscriber_answer": self._subscriber_answer,
            "ice_candidate": self._ice_candidate,
            "media_restart": self._media_restart,
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

    async def _raise_hand(
        self, actor: Participant, room_id: str, _: ev.RaiseHand
    ) -> dict[str, Any]:
        live = await self.service.raise_hand(actor, room_id)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _lower_hand(
        self, actor: Participant, room_id: str, req: ev.LowerHand
    ) -> dict[str, Any]:
        live = await self.service.lower_hand(actor, room_id, req.identity)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _grant_floor(
        self, actor: Participant, room_id: str, req: ev.GrantFloor
    ) -> dict[str, Any]:
        live = await self.service.grant_floor(actor, room_id, req.identity, req.time_limit_seconds)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _revoke_floor(
        self, actor: Participant, room_id: str, _: ev.RevokeFloor
    ) -> dict[str, Any]:
        live = await self.service.revoke_floor(actor, room_id)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _next_speaker(
        self, actor: Participant, room_id: str, req: ev.NextSpeaker
    ) -> dict[str, Any]:
        live = await self.service.next_speaker(actor, room_id, req.time_limit_seconds)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _advance_agenda(
        self, actor: Participant, room_id: str, req: ev.AdvanceAgenda
    ) -> dict[str, Any]:
        live = await self.service.advance_agenda(actor, room_id, req.index)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _set_lock(self, actor: Participant, room_id: str, req: ev.SetLock) -> dict[str, Any]:
        live = await self.service.set_locked(actor, room_id, req.locked)
        return ev.ok_ack(live=live.model_dump(mode="json"))

    async def _request_mute(
        self, actor: Participant, room_id: str, req: ev.RequestMute
    ) -> dict[str, Any]:
        await self.service.request_mute(actor, room_id, req.identity, req.kind)
        return ev.ok_ack()

    async def _remove_participant(
        self, actor: Participant, room_id: str, req: ev.RemoveParticipant
    ) -> dict[str, Any]:
        await self.service.remove(actor, room_id, req.identity, req.reason)
        return ev.ok_ack()

    async def _end_session(
        self, actor: Participant, room_id: str, _: ev.EndSession
    ) -> dict[str, Any]:
        await self.service.end_session(actor, room_id)
        return ev.ok_ack()

    async def _start_recording(
        self, actor: Participant, room_id: str, _: ev.StartRecording
    ) -> dict[str, Any]:
        info = await self.service.host_start_recording(actor, room_id)
        return ev.ok_ack(recording=info.model_dump(mode="json"))

    async def _stop_recording(
        self, actor: Participant, room_id: str, _: ev.StopRecording
    ) -> dict[str, Any]:
        info = await self.service.host_stop_recording(actor, room_id)
        return ev.ok_ack(recording=info.model_dump(mode="json"))

    async def _chat(self, actor: Participant, room_id: str, req: ev.Chat) -> dict[str, Any]:
        entry = await self.service.chat(actor, room_id, req.text)
        return ev.ok_ack(entry=entry.model_dump(mode="json"))

    async def _media_state(
        self, actor: Participant, room_id: str, req: ev.MediaState
    ) -> dict[str, Any]:
        updated = await self.service.set_media_state(
            actor, room_id, req.audio_muted, req.video_muted
        )
        return ev.ok_ack(participant=updated.model_dump(mode="json"))

    async def _publish_offer(
        self, actor: Participant, room_id: str, req: ev.PublishOffer
    ) -> dict[str, Any]:
        answer = await self.service.publish(actor, room_id, req.sdp)
        return ev.ok_ack(sdp=answer)

    async def _subscriber_answer(
        self, actor: Participant, room_id: str, req: ev.SubscriberAnswer
    ) -> dict[str, Any]:
        await self.service.subscriber_answer(actor, room_id, req.sdp)
        return ev.ok_ack()

    async def _ice_candidate(
        self, actor: Participant, room_id: str, req: ev.IceCandidate
    ) -> dict[str, Any]:
        candidate = req.candidate.model_dump(exclude_none=True)
        await self.service.ice_candidate(actor, room_id, req.pc, candidate)
        return ev.ok_ack()

    async def _media_restart(
        self, actor: Participant, room_id: str, _: ev.MediaRestart
    ) -> dict[str, Any]:
        await self.service.restart_media(actor, room_id)
        return ev.ok_ack()
