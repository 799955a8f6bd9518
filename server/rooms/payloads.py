"""The payloads of the room's commands: one schema per client event, with size limits.

They are the domain's command vocabulary: the signaling edge validates a
client's payload against them before relaying it, and the room's owner parses
the same schema when the command arrives from another node. A payload that does
not match is refused with an `invalid_payload` error and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from server.rooms.models import Identity, Strict

#: Largest SDP accepted (the media layer enforces its own limit as well).
MAX_SDP_BYTES = 64 * 1024

ChatText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
#: Speaking-time limits, in seconds, up to an hour.
TimeLimit = Annotated[int, Field(ge=1, le=3600)]


class Payload(Strict):
    """Base of command payloads: strict types, so `"yes"` is not taken for `true`."""

    model_config = ConfigDict(strict=True)


class Join(Payload):
    """Enter the session; the ack carries the snapshot. Sent once after connecting."""


class Leave(Payload):
    """Leave the session on purpose (hang up); the room hears `left`, not `connection_lost`."""


class RefreshIceServers(Payload):
    """Ask for fresh ICE servers (TURN credentials) before the current ones expire."""


class RaiseHand(Payload):
    """Ask for the floor (members and guests)."""


class LowerHand(Payload):
    """Withdraw one's request; the host may name someone else (skip them)."""

    identity: Identity | None = None


class GrantFloor(Payload):
    """Host: give the floor to a participant, optionally with a time limit."""

    identity: Identity
    time_limit_seconds: TimeLimit | None = None


class RevokeFloor(Payload):
    """Host: take the floor back. The speaker may also send it to yield."""


class NextSpeaker(Payload):
    """Host: give the floor to the first in the queue."""

    time_limit_seconds: TimeLimit | None = None


class AdvanceAgenda(Payload):
    """Host: go to the next agenda item, or to `index`."""

    index: Annotated[int, Field(ge=0, le=99)] | None = None


class SetLock(Payload):
    """Host: lock or unlock the session against newcomers."""

    locked: bool


class RequestMute(Payload):
    """Host: ask a participant to mute their microphone or camera."""

    identity: Identity
    kind: Literal["audio", "video"] = "audio"


class RemoveParticipant(Payload):
    """Host: remove a participant for the rest of the session."""

    identity: Identity
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class EndSession(Payload):
    """Host: end the session for everyone."""


class StartRecording(Payload):
    """Host: start recording the session for the archive."""


class StopRecording(Payload):
    """Host: stop recording."""


class Chat(Payload):
    """Post a chat message."""

    text: ChatText


class MediaState(Payload):
    """Tell the room one's microphone/camera mute state."""

    audio_muted: bool
    video_muted: bool


SdpText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_BYTES)]


class PublishOffer(Payload):
    """Offer of the client's publish connection (camera and microphone); the ack has the answer."""

    sdp: SdpText


class SubscriberAnswer(Payload):
    """Answer to the server's latest `subscriber_offer`."""

    sdp: SdpText


class Candidate(Payload):
    """An ICE candidate as the browser's RTCIceCandidate.toJSON() gives it."""

    candidate: Annotated[str, StringConstraints(max_length=1024)]
    sdpMid: Annotated[str, StringConstraints(max_length=32)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=63)] | None = None
    usernameFragment: Annotated[str, StringConstraints(max_length=256)] | None = None


class IceCandidate(Payload):
    """A trickled candidate of the client's `publish` or `subscribe` connection."""

    pc: Literal["publish", "subscribe"]
    candidate: Candidate


class MediaRestart(Payload):
    """Ask for a fresh subscribe connection after network trouble (then re-publish)."""
