"""The consultation session's data: venues by level, roles, agenda, live state.

These pydantic models are the domain's vocabulary and also the validated
schemas of everything that crosses a boundary (REST bodies, Socket.IO payloads,
what Redis stores). Every string and list has a size limit.
"""

from __future__ import annotations

import enum
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)


def _no_control_chars(text: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise ValueError("must not contain control or format characters")
    return text


#: Lowercase slug used for room and venue ids (appears in URLs and Redis keys).
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")]
#: A participant's stable id within a room (from the token's subject). It also names the
#: participant's media streams in SDP (msid), hence no characters beyond these.
Identity = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_no_control_chars),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]
# Topics may span paragraphs, so newlines and tabs are allowed there.
Topic = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


#: Who may watch a session's live broadcast (see `RoomSpec.broadcast`).
BroadcastMode = Literal["off", "public", "token"]


class Level(enum.StrEnum):
    """Administrative level of a venue, from the top down."""

    NATIONAL = "national"
    PROVINCIAL = "provincial"
    CITY = "city"
    COUNTY = "county"


class Role(enum.StrEnum):
    """What a participant may do; carried in the signed token."""

    #: Runs the session: floor, agenda, mute/remove, lock, recording, end.
    HOST = "host"
    #: Helps the host from any venue: runs the queue, admits from the lobby, mutes, pins,
    #: renames, removes others; cannot end the session, record, or remove a host.
    COHOST = "cohost"
    #: Runs the speaking queue and the public gallery's moderation queue (approves, answers,
    #: shows questions); cannot admit, mute, remove, record or end the session.
    MODERATOR = "moderator"
    #: Publishes, asks for the floor, chats.
    MEMBER = "member"
    #: Publishes only while holding the floor; may ask for it and chat. An observer the
    #: host brings on stage (连线) is a guest until the connection ends.
    GUEST = "guest"
    #: Receives only: the public or staff watching. May ask to be connected (a raised hand).
    OBSERVER = "observer"
    #: Watches the live broadcast (HLS) of a `token` broadcast; never joins the session.
    VIEWER = "viewer"
    #: Technical staff (会控) of this one session: its control room (media of every venue,
    #: alerts, reconnect, spotlight, venue quality), not the session itself.
    OPERATOR = "operator"

    @property
    def can_request_floor(self) -> bool:
        """Whether this role may raise a hand (an observer's asks to be brought on stage)."""
        return self in (Role.MEMBER, Role.GUEST, Role.COHOST, Role.OBSERVER)

    @property
    def moderates(self) -> bool:
        """Whether this role runs the session's floor, lobby and moderation (host, co-host)."""
        return self in (Role.HOST, Role.COHOST)

    @property
    def runs_queues(self) -> bool:
        """Whether this role runs the speaking queue and the gallery's moderation queue."""
        return self in (Role.HOST, Role.COHOST, Role.MODERATOR)

    @property
    def can_chat(self) -> bool:
        """Observers watch; everyone else may write in the chat."""
        return self is not Role.OBSERVER


def describe(exc: ValidationError, what: str) -> str:
    """One line naming the first invalid field: `venues.0.level: Input should be ...`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or what
    return f"{where}: {first['msg']}"


class Strict(BaseModel):
    """Base for every schema: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_max_length=4000)


class Venue(Strict):
    """A place taking part in the session (a committee's meeting room), at one level."""

    id: Slug
    name: DisplayName
    level: Level
    #: The main venue is where the host sits; a room has exactly one.
    main: bool = False


class AgendaItem(Strict):
    """One item of the agenda, with the speakers planned for it."""

    title: Title
    #: Who is planned to speak: identities of invitees, or simply names (the organizer need
    #: not have invited anyone yet); clients show an invitee's name for an identity.
    planned_speakers: list[DisplayName] = Field(default_factory=list, max_length=50)
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)


class RoomSpec(Strict):
    """What an organizer submits to create a consultation session."""

    #: Optional stable id; generated when absent.
    id: Slug | None = None
    title: Title
    topic: Topic = ""
    scheduled_start: datetime
    venues: list[Venue] = Field(min_length=1, max_length=64)
    agenda: list[AgendaItem] = Field(default_factory=list, max_length=100)
    #: Start recording as soon as the session goes live (its first participant joins).
    auto_record: bool = False
    #: Newcomers wait in a lobby until a host or co-host admits them (a locked session
    #: puts them there too); hosts, co-hosts and those admitted before go straight in.
    lobby: bool = False
    #: The live broadcast (HLS at `/live/{room}`): `off`, `public` (anyone may watch) or
    #: `token` (a viewer token from the tokens endpoint is needed).
    broadcast: BroadcastMode = "off"

    @model_validator(mode="after")
    def _check_venues(self) -> RoomSpec:
        ids = [venue.id for venue in self.venues]
        if len(set(ids)) != len(ids):
            raise ValueError("venue ids must be unique")
        mains = [venue.id for venue in self.venues if venue.main]
        if len(mains) != 1:
            raise ValueError(f"exactly one venue must be the main venue (found {len(mains)})")
        if self.scheduled_start.tzinfo is None:
            raise ValueError("scheduled_start must include a time zone offset")
        return self


class Room(RoomSpec):
    """A created session: the spec plus its id, creation time and incarnation."""

    id: Slug
    created_at: datetime
    #: Random per creation: join tokens carry it, so re-creating a deleted id revokes
    #: every token of the old session (a removed member's included).
    incarnation: Annotated[str, StringConstraints(max_length=32)] = ""

    def venue(self, venue_id: str) -> Venue | None:
        """The venue with this id, or None."""
        return next((v for v in self.venues if v.id == venue_id), None)

    @property
    def main_venue(self) -> Venue:
        """The venue where the host sits."""
        return next(v for v in self.venues if v.main)


class Invitee(Strict):
    """Who a join token was issued to; the session roster is made of these."""

    identity: Identity
    name: DisplayName
    role: Role
    venue: Slug


class Invitation(Strict):
    """The last join link issued to an invitee, kept so organizers can show it again."""

    identity: Identity
    url: Annotated[str, StringConstraints(max_length=4096)]
    #: Seconds since the epoch.
    expires_at: int
    issued_at: int


class Caller(Invitee):
    """Who sends an event: the verified token's invitee and the connection it came on."""

    #: The signaling connection (Socket.IO sid) and the node holding it.
    session: Annotated[str, StringConstraints(max_length=64)]
    node: Annotated[str, StringConstraints(max_length=64)]


#: Why a participant is in the reconnecting state.
ReconnectReason = Literal["connection_lost", "media"]


class Participant(Invitee):
    """Someone connected right now."""

    #: The signaling connection (Socket.IO sid) and the node holding it.
    session: Annotated[str, StringConstraints(max_length=64)]
    node: Annotated[str, StringConstraints(max_length=64)]
    joined_at: float
    audio_muted: bool = False
    video_muted: bool = False
    #: Why the participant is being waited for (null: connected): its socket dropped
    #: (`connection_lost`, held for the reconnect grace period) or its media connections
    #: are being rebuilt (`media`). Others show "reconnecting" on its tile, not a leave.
    reconnecting: ReconnectReason | None = None


class LobbyEntry(Invitee):
    """Someone waiting in the lobby, as hosts see them."""

    #: When they started waiting (ms since the epoch).
    since: float


class Waiting(LobbyEntry):
    """A lobby entry with the connection that waits (the owner's record)."""

    session: Annotated[str, StringConstraints(max_length=64)]
    node: Annotated[str, StringConstraints(max_length=64)]


class FloorGrant(Strict):
    """Who holds the floor, since when, and until when if time-limited."""

    identity: Identity
    #: Unique per grant, so an expiry timer never revokes a later grant to the same person.
    grant_id: Annotated[str, StringConstraints(max_length=32)]
    granted_at: float
    deadline: float | None = None


class ScreenShare(Strict):
    """Someone shows their screen (a third track) in everyone's spotlight."""

    identity: Identity
    #: The publisher's track that carries the screen (its msid track id in subscriber SDP).
    track: Annotated[str, StringConstraints(max_length=128)]
    #: A host's share outlives the floor; anyone else's ends with their turn.
    by_host: bool = False
    started_at: float


#: A stage seat's state: invited (waiting for the observer's answer), or on stage.
StageStatus = Literal["invited", "on_stage"]


class StageSeat(Strict):
    """连线: an observer the host invited on stage, or brought there (see `server.rooms.stage`).

    Room state held by the owner (it survives a hand-over); the participant's token keeps
    its role, the owner raises it to guest only while the seat says `on_stage`.
    """

    identity: Identity
    status: StageStatus
    #: Who invited them.
    by: Identity
    #: Unique per invitation, so an expiry timer never ends a later one.
    invite_id: Annotated[str, StringConstraints(max_length=32)]
    #: When the invitation was sent, then when they went on stage (ms since the epoch).
    since: float
    #: Until when the invitation may be accepted (ms since the epoch).
    expires_at: float
    #: The speaking time the host gave with the invitation (None: until the host ends it).
    time_limit_seconds: int | None = Field(default=None, ge=1, le=3600)
    #: The call-in request this seat answers: a viewer of the broadcast who asked to speak
    #: (see `server.rooms.call_ins`); None for an observer already in the room.
    call_in: Annotated[str, StringConstraints(max_length=32)] | None = None


SessionStatus = Literal["scheduled", "live", "ended"]


class LiveState(Strict):
    """The changing part of a session; one JSON document updated atomically."""

    status: SessionStatus = "scheduled"
    #: None means nobody was given the floor: the host's venue is shown.
    floor: FloorGrant | None = None
    #: Raised hands in the order they were raised.
    queue: list[Identity] = Field(default_factory=list)
    agenda_index: int = 0
    locked: bool = False
    recording: bool = False
    #: Who a host pinned into everyone's spotlight (over the floor holder); None: nobody.
    pinned: Identity | None = None
    #: A screen shown in everyone's spotlight (over everything else); None: nobody shares.
    screen: ScreenShare | None = None
    #: The stage seat (连线): an observer invited on stage or on it; None: nobody.
    stage: StageSeat | None = None
    #: A host paused the live broadcast (viewers see a slate until it resumes).
    broadcast_paused: bool = False
    #: Bumped on every change, so clients can drop stale updates.
    version: int = 0


class TimelineEntry(Strict):
    """One event of the session's history (the archive's chapters come from these)."""

    id: str
    ts: float
    type: str
    data: dict[str, object]


class NodeRef(Strict):
    """A server node, as clients see it: its id and the URL that reaches it."""

    id: Annotated[str, StringConstraints(max_length=64)]
    url: Annotated[str, StringConstraints(max_length=2048)]


GalleryKind = Literal["question", "opinion"]
#: A question or opinion from the gallery, and a moderator's answer to one.
GalleryText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
GalleryStatus = Literal["pending", "approved", "rejected"]


class PublicGalleryItem(Strict):
    """A question or opinion from the gallery as everyone sees it once it is approved."""

    id: Annotated[str, StringConstraints(max_length=32)]
    kind: GalleryKind
    text: GalleryText
    #: What the poster chose to be called, and where from (both optional).
    name: DisplayName | None = None
    district: DisplayName | None = None
    #: The agenda item current when it was posted.
    agenda_index: int
    answer: GalleryText | None = None


class GalleryItem(PublicGalleryItem):
    """A gallery item as the moderators see it: who posted it, and its moderation state."""

    #: The poster's identity (never shown to participants).
    by: Identity
    submitted_at: float
    status: GalleryStatus = "pending"
    #: Who approved or rejected it, or answered it.
    handled_by: Identity | None = None

    def public(self) -> PublicGalleryItem:
        """The part participants see."""
        return PublicGalleryItem.model_validate(
            self.model_dump(include=set(PublicGalleryItem.model_fields))
        )


# --- call-in requests (a broadcast viewer asks to speak; see server.rooms.call_ins) ------

#: A viewer's few words on what they want to say.
CallInNote = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200),
    AfterValidator(_no_control_chars),
]
#: `pending` (asked), `invited` (a host invited it; the seat is reserved), `accepted` (the
#: viewer took the join credential), `on_stage`, then one of the closed states: `ended`
#: (the connection ended), `declined` (by the viewer), `dismissed` (by a host), `expired`
#: (the invitation lapsed), `withdrawn` (a host withdrew the invitation or it was never used).
CallInStatus = Literal[
    "pending",
    "invited",
    "accepted",
    "on_stage",
    "ended",
    "declined",
    "dismissed",
    "expired",
    "withdrawn",
]
#: The states in which a request is still under way (one per viewer at a time).
CALL_IN_OPEN: frozenset[str] = frozenset({"pending", "invited", "accepted", "on_stage"})


class CallIn(Strict):
    """A broadcast viewer's request to speak, as hosts, co-hosts and moderators see it."""

    id: Annotated[str, StringConstraints(max_length=32)]
    name: DisplayName
    district: DisplayName | None = None
    note: CallInNote = ""
    status: CallInStatus = "pending"
    #: The fresh room identity the viewer joins under (set when a host invites it).
    identity: Identity | None = None
    #: Who invited or dismissed it.
    handled_by: Identity | None = None
    submitted_at: float
    #: When the status last changed (ms since the epoch).
    updated_at: float


class CallInRecord(CallIn):
    """A call-in request as the room's owner keeps it: with who asked and the digest of
    the viewer's handle (the handle itself is never stored)."""

    #: The viewer who asked (a viewer token's subject, or the id of a public client address).
    by: Identity
    handle_digest: Annotated[str, StringConstraints(min_length=64, max_length=64)]

    def for_moderators(self) -> CallIn:
        """The part hosts see (not who asked, not the handle)."""
        return CallIn.model_validate(self.model_dump(include=set(CallIn.model_fields)))


# --- micro-suggestions (微建议; see server.rooms.suggestions) -------------------------------

#: The fixed categories of a member's suggestion (labels: `server.rooms.suggestions`).
SuggestionCategory = Literal[
    "economy", "environment", "urban", "livelihood", "education", "governance", "other"
]
#: What became of a suggestion after the session (set over the REST API).
SuggestionStatus = Literal["received", "forwarded", "answered"]
SuggestionTitle = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
]
# The body may span paragraphs, so newlines and tabs are allowed there.
SuggestionBody = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
]
#: The department a suggestion is addressed to (free text, optional).
SuggestionDepartment = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_no_control_chars),
]
SuggestionReply = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
]


class Suggestion(Strict):
    """A member's written suggestion, tied to an agenda item; handled after the session."""

    id: Annotated[str, StringConstraints(max_length=32)]
    #: Who submitted it (from their token): identity, name, venue.
    by: Identity
    name: DisplayName
    venue: Slug
    agenda_index: int = Field(ge=0, le=99)
    category: SuggestionCategory
    department: SuggestionDepartment | None = None
    title: SuggestionTitle
    body: SuggestionBody
    #: ms since the epoch.
    submitted_at: float
    #: Whether it was submitted before the session went live (over the REST API).
    before_session: bool = False
    status: SuggestionStatus = "received"
    reply: SuggestionReply | None = None
    #: When the status or reply was last set (ms since the epoch).
    handled_at: float | None = None


class Snapshot(Strict):
    """What a participant receives on joining: the whole session as it is now."""

    room: Room
    you: Participant
    participants: list[Participant]
    roster: list[Invitee]
    live: LiveState
    timeline: list[TimelineEntry]
    server_time: float
    #: The room's broadcast sequence when the snapshot was taken (events carry theirs).
    seq: int = 0
    #: The node that owns the room and serves its media (ICE goes there).
    owner: NodeRef | None = None
    #: Every live node, for reconnecting elsewhere when this connection's node goes away.
    nodes: list[NodeRef] = Field(default_factory=list, max_length=256)
    #: Whose voice is loudest now (later changes come as `active_speaker` events).
    active_speaker: Annotated[str, StringConstraints(max_length=64)] | None = None
    #: Who waits in the lobby (for hosts and co-hosts; empty for everyone else).
    lobby: list[LobbyEntry] = Field(default_factory=list)
    #: The gallery's approved questions and opinions (everyone) and the one on screen.
    gallery: list[PublicGalleryItem] = Field(default_factory=list)
    gallery_on_screen: Annotated[str, StringConstraints(max_length=32)] | None = None
    #: The whole moderation queue (for those who run it; empty for everyone else).
    gallery_queue: list[GalleryItem] = Field(default_factory=list)
    #: Micro-suggestions: all of them for hosts, co-hosts and moderators; one's own otherwise.
    suggestions: list[Suggestion] = Field(default_factory=list)
    #: Broadcast viewers' requests to speak (for hosts, co-hosts, moderators; else empty).
    call_ins: list[CallIn] = Field(default_factory=list)


class PersistedRoom(Strict):
    """A room's live state as its owner writes it behind to Redis (the takeover point)."""

    incarnation: Annotated[str, StringConstraints(max_length=32)] = ""
    #: The node that wrote it.
    owner: Annotated[str, StringConstraints(max_length=64)] | None = None
    #: The owner handed the room over on purpose (it drained): nobody needs to wait for it.
    handed_over: bool = False
    seq: int = 0
    live: LiveState = Field(default_factory=LiveState)
    participants: list[Participant] = Field(default_factory=list)
    #: Identities the host removed (refused for the rest of the session).
    banned: list[Identity] = Field(default_factory=list)
    #: Identities that joined once (a locked session still lets them back).
    admitted: list[Identity] = Field(default_factory=list)
    #: Display names a host changed, by identity (kept when they rejoin).
    renamed: dict[Identity, DisplayName] = Field(default_factory=dict)
    #: Who waits in the lobby, with their connection.
    lobby: list[Waiting] = Field(default_factory=list)
    #: The recording in progress, to be resumed by a successor.
    recording_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    #: The gallery's moderation queue (bounded; see `server.rooms.gallery`), the item on
    #: screen, and the next item number.
    gallery: list[GalleryItem] = Field(default_factory=list, max_length=1000)
    gallery_on_screen: Annotated[str, StringConstraints(max_length=32)] | None = None
    gallery_next: int = 1
    #: Members' micro-suggestions (bounded; see `server.rooms.suggestions`) and the next number.
    suggestions: list[Suggestion] = Field(default_factory=list, max_length=1000)
    suggestion_next: int = 1
    #: Broadcast viewers' requests to speak (bounded; see `server.rooms.call_ins`).
    call_ins: list[CallInRecord] = Field(default_factory=list, max_length=1000)
    call_in_next: int = 1
    written_at: float = 0.0
