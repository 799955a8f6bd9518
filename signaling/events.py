"""The `/room` Socket.IO protocol: one schema per client event, with size limits.

docs/protocol.md documents each event; this module is what enforces it. A
payload that does not match its schema is refused with an `invalid_payload`
error ack and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from server.rooms.models import Identity, Strict, describe

NAMESPACE = "/room"

#: Largest JSON payload accepted for any control event (bytes, UTF-8).
MAX_CONTROL_PAYLOAD_BYTES = 4 * 1024
#: Largest SDP accepted (the media layer enforces its own limit as well).
MAX_SDP_BYTES = 64 * 1024
#: Events that carry SDP may be this large; every other event is a control event.
MAX_SDP_PAYLOAD_BYTES = MAX_SDP_BYTES + 1024
#: Largest Socket.IO message the server accepts at all (SDP offers are the biggest).
MAX_MESSAGE_BYTES = 256 * 1024

ChatText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
#: Speaking-time limits, in seconds, up to an hour.
TimeLimit = Annotated[int, Field(ge=1, le=3600)]


class ClientEvent(Strict):
    """Base of client payloads: strict types, so `"yes"` is not taken for `true`."""

    model_config = ConfigDict(strict=True)


class Join(ClientEvent):
    """Enter the session; the ack carries the snapshot. Sent once after connecting."""


class Leave(ClientEvent):
    """Leave the session on purpose (hang up); the room hears `left`, not `connection_lost`."""


class RaiseHand(ClientEvent):
    """Ask for the floor (members and guests)."""


class LowerHand(ClientEvent):
    """Withdraw one's request; the host may name someone else (skip them)."""

    identity: Identity | None = None


class GrantFloor(ClientEvent):
    """Host: give the floor to a participant, optionally with a time limit."""

    identity: Identity
    time_limit_seconds: TimeLimit | None = None


class RevokeFloor(ClientEvent):
    """Host: take the floor back. The speaker may also send it to yield."""


class NextSpeaker(ClientEvent):
    """Host: give the floor to the first in the queue."""

    time_limit_seconds: TimeLimit | None = None


class AdvanceAgenda(ClientEvent):
    """Host: go to the next agenda item, or to `index`."""

    index: Annotated[int, Field(ge=0, le=99)] | None = None


class SetLock(ClientEvent):
    """Host: lock or unlock the session against newcomers."""

    locked: bool


class RequestMute(ClientEvent):
    """Host: ask a participant to mute their microphone or camera."""

    identity: Identity
    kind: Literal["audio", "video"] = "audio"


class RemoveParticipant(ClientEvent):
    """Host: remove a participant for the rest of the session."""

    identity: Identity
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class EndSession(ClientEvent):
    """Host: end the session for everyone."""


class StartRecording(ClientEvent):
    """Host: start recording the session for the archive."""


class StopRecording(ClientEvent):
    """Host: stop recording."""


class Chat(ClientEvent):
    """Post a chat message."""

    text: ChatText


class MediaState(ClientEvent):
    """Tell the room one's microphone/camera mute state."""

    audio_muted: bool
    video_muted: bool


SdpText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_BYTES)]


class PublishOffer(ClientEvent):
    """Offer of the client's publish connection (camera and microphone); the ack has the answer."""

    sdp: SdpText


class SubscriberAnswer(ClientEvent):
    """Answer to the server's latest `subscriber_offer`."""

    sdp: SdpText


class Candidate(ClientEvent):
    """An ICE candidate as the browser's RTCIceCandidate.toJSON() gives it."""

    candidate: Annotated[str, StringConstraints(max_length=1024)]
    sdpMid: Annotated[str, StringConstraints(max_length=32)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=63)] | None = None
    usernameFragment: Annotated[str, StringConstraints(max_length=256)] | None = None


class IceCandidate(ClientEvent):
    """A trickled candidate of the client's `publish` or `subscribe` connection."""

    pc: Literal["publish", "subscribe"]
    candidate: Candidate


class MediaRestart(ClientEvent):
    """Ask for a fresh subscribe connection after network trouble (then re-publish)."""


#: Every client -> server event and its payload schema.
CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    "join": Join,
    "leave": Leave,
    "raise_hand": RaiseHand,
    "lower_hand": LowerHand,
    "grant_floor": GrantFloor,
    "revoke_floor": RevokeFloor,
    "next_speaker": NextSpeaker,
    "advance_agenda": AdvanceAgenda,
    "set_lock": SetLock,
    "request_mute": RequestMute,
    "remove_participant": RemoveParticipant,
    "end_session": EndSession,
    "start_recording": StartRecording,
    "stop_recording": StopRecording,
    "chat": Chat,
    "media_state": MediaState,
    "publish_offer": PublishOffer,
    "subscriber_answer": SubscriberAnswer,
    "ice_candidate": IceCandidate,
    "media_restart": MediaRestart,
}

#: Events allowed above the control-event size limit, with their own limit.
LARGE_EVENTS = {"publish_offer": MAX_SDP_PAYLOAD_BYTES, "subscriber_answer": MAX_SDP_PAYLOAD_BYTES}

#: Server -> client events (payload shapes are in docs/protocol.md).
SERVER_EVENTS = (
    "participant_joined",
    "participant_left",
    "participant_updated",
    "live_state",
    "timeline",
    "mute_requested",
    "removed",
    "replaced",
    "session_ended",
    "subscriber_offer",
    "active_speaker",
    "media_connection",
    "recording",
    "recording_error",
)


class PayloadError(ValueError):
    """A client payload is not acceptable; `code` and message go into the error ack."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_payload(event: str, payload: Any, size: int) -> ClientEvent:
    """Validate a client event's payload (already measured at `size` bytes)."""
    schema = CLIENT_EVENTS.get(event)
    if schema is None:
        raise PayloadError("unknown_event", f"unknown event {event[:64]!r}")
    limit = LARGE_EVENTS.get(event, MAX_CONTROL_PAYLOAD_BYTES)
    if size > limit:
        raise PayloadError("payload_too_large", f"{event} payload exceeds {limit} bytes")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise PayloadError("invalid_payload", f"{event} expects a JSON object")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise PayloadError("invalid_payload", f"{event}: {describe(exc, 'payload')}") from exc


def error_ack(code: str, message: str) -> dict[str, Any]:
    """The ack sent for a refused event."""
    return {"ok": False, "error": {"code": code, "message": message}}


def ok_ack(**data: Any) -> dict[str, Any]:
    """The ack sent for an accepted event."""
    return {"ok": True, **data}
