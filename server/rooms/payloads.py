"""The payloads of the room's commands: one schema per client event, with size limits.

They are the domain's command vocabulary: the signaling edge validates a
client's payload against them before relaying it, and the room's owner parses
the same schema when the command arrives from another node. A payload that does
not match is refused with an `invalid_payload` error and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from server.rooms.models import (
    CallInNote,
    DisplayName,
    GalleryKind,
    GalleryText,
    Identity,
    Strict,
    SuggestionBody,
    SuggestionCategory,
    SuggestionDepartment,
    SuggestionTitle,
)

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


class MuteAll(Payload):
    """Host or co-host: ask everyone to mute their microphone, except the floor holder."""


class Pin(Payload):
    """Host or co-host: put a participant (their venue) in everyone's spotlight; null unpins."""

    identity: Identity | None


class MoveInQueue(Payload):
    """Host or co-host: move a raised hand to `position` in the queue (0 is next)."""

    identity: Identity
    position: Annotated[int, Field(ge=0, le=499)]


class ExtendFloor(Payload):
    """Host or co-host: give the speaker more time on a timed floor."""

    seconds: Annotated[int, Field(ge=1, le=1800)]


class RenameParticipant(Payload):
    """Host or co-host: change how a participant's name is shown, for everyone."""

    identity: Identity
    name: DisplayName


#: Up to 50 people per `admit`/`deny` (what fits the 4 KiB control payload limit); clients
#: send a long lobby in several.
LobbyIdentities = Annotated[list[Identity], Field(min_length=1, max_length=50)]


class Admit(Payload):
    """Host or co-host: let these people in from the lobby."""

    identities: LobbyIdentities


class Deny(Payload):
    """Host or co-host: turn these people away from the lobby (their connections close)."""

    identities: LobbyIdentities


class StartScreenShare(Payload):
    """The host, or the floor holder: show the video track just added to the publish
    connection (a screen or window) in everyone's spotlight."""


class StopScreenShare(Payload):
    """The one sharing, or a host or co-host: stop showing the shared screen."""


class EndSession(Payload):
    """Host: end the session for everyone."""


class StartRecording(Payload):
    """Host: start recording the session for the archive."""


class StopRecording(Payload):
    """Host: stop recording."""


class BroadcastPause(Payload):
    """Host or co-host: show a slate instead of the session in the live broadcast."""


class BroadcastResume(Payload):
    """Host or co-host: show the session in the live broadcast again."""


class Chat(Payload):
    """Post a chat message."""

    text: ChatText


GalleryItemId = Annotated[str, StringConstraints(pattern=r"^g[0-9]{1,9}$")]


class GalleryPost(Payload):
    """Post a question or opinion to the gallery's moderation queue (shown only once
    approved); tied to the current agenda item."""

    kind: GalleryKind = "question"
    text: GalleryText
    name: DisplayName | None = None
    district: DisplayName | None = None


class GalleryApprove(Payload):
    """Host, co-host or moderator: show a gallery item to everyone in the room."""

    id: GalleryItemId


class GalleryReject(Payload):
    """Host, co-host or moderator: turn a gallery item down (it is never shown)."""

    id: GalleryItemId


class GalleryAnswer(Payload):
    """Host, co-host or moderator: answer a gallery item in text (approving it)."""

    id: GalleryItemId
    text: GalleryText


class GalleryShow(Payload):
    """Host, co-host or moderator: put a gallery item on everyone's screen (approving
    it); null takes it off."""

    id: GalleryItemId | None


class SuggestionSubmit(Payload):
    """Member, co-host or host: submit a written suggestion (微建议) on an agenda item
    (the current one when `agenda_index` is absent)."""

    agenda_index: Annotated[int, Field(ge=0, le=99)] | None = None
    category: SuggestionCategory
    department: SuggestionDepartment | None = None
    title: SuggestionTitle
    body: SuggestionBody


class MediaState(Payload):
    """Tell the room one's microphone/camera mute state."""

    audio_muted: bool
    video_muted: bool


SdpText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SDP_BYTES)]


#: An SDP media id (`a=mid:`), as browsers make them.
Mid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,16}$")]


class PublishOffer(Payload):
    """Offer of the client's publish connection (camera and microphone); the ack has the answer.

    `low_video` names the camera's second, low encoding (~320x180, a second video
    track): `{low mid: camera mid}`. Receivers then get the camera in its high
    encoding when it is their spotlight and in the low one in a tile.
    """

    sdp: SdpText
    low_video: Annotated[dict[Mid, Mid], Field(max_length=1)] | None = None


class VideoView(Payload):
    """The receiver's layout: whom it pinned large (null: the room's spotlight) and
    whether its tile area is on screen (a hidden one gets no tile video)."""

    pinned: Identity | None = None
    tiles_visible: bool = True


#: Bounds of the control room's cap on a venue's camera (bit/s).
MIN_SEND_CAP = 100_000
MAX_SEND_CAP = 10_000_000


class VenueQuality(Payload):
    """The control room's caps on one venue's quality: what its participants receive
    (`receive`: "full" lifts the cap; "reduced": the spotlight in low quality;
    "audio_only": no video) and what their cameras send (`send_max_bitrate` bit/s on
    the high encoding; null: no cap). Their links' own adaptation can only go lower."""

    receive: Literal["full", "reduced", "audio_only"] = "full"
    send_max_bitrate: Annotated[int, Field(ge=MIN_SEND_CAP, le=MAX_SEND_CAP)] | None = None

    @property
    def lifted(self) -> bool:
        """True when this caps nothing."""
        return self.receive == "full" and self.send_max_bitrate is None


class SubscriberAnswer(Payload):
    """Answer to the server's latest `subscriber_offer`."""

    sdp: SdpText
    #: The `offer_id` of the offer this answers (recommended; an old offer's is refused).
    offer_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")


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


# --- the stage seat (连线; see server.rooms.stage) --------------------------------------


class StageInvite(Payload):
    """Host or co-host: invite an observer on stage, optionally with a speaking-time limit."""

    identity: Identity
    time_limit_seconds: TimeLimit | None = None


class StageAccept(Payload):
    """The invited observer accepts: on stage as a guest, with the floor."""


class StageDecline(Payload):
    """The invited observer declines."""


class StageEnd(Payload):
    """End the connection (host, co-host, or the guest), or withdraw the invitation."""


# --- call-ins: broadcast viewers who ask to speak (see server.rooms.call_ins) ------------

CallInId = Annotated[str, StringConstraints(pattern=r"^c[0-9]{1,9}$")]
#: What a viewer's page does with its request: ask, then follow it by its handle.
CallInOp = Literal["ask", "status", "accept", "decline"]


class CallInAsk(Payload):
    """A broadcast viewer asks to speak (`POST /live/{room}/call-ins`): who they are, from
    where, and a few words on what they want to say. Nothing here names a room or role."""

    name: DisplayName
    district: DisplayName | None = None
    note: CallInNote = ""


class CallInHandle(Payload):
    """The viewer's page names its request by the handle it got when asking."""

    handle: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{32,64}$")]


class CallInInvite(Payload):
    """Host or co-host: invite a viewer's request on stage (the seat is reserved for it)."""

    id: CallInId
    time_limit_seconds: TimeLimit | None = None


class CallInDismiss(Payload):
    """Host, co-host or moderator: turn a viewer's request down."""

    id: CallInId
