"""Payloads of the events the server sends to clients (docs/protocol.md lists them all).

Events whose payload is a domain model send that model (`participant_joined`
a Participant, `live_state` a LiveState, `timeline` a TimelineEntry); the rest
have a schema here, so nothing reaches a client as an untyped dict.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from server.rooms.models import (
    CallIn,
    GalleryItem,
    Identity,
    LobbyEntry,
    NodeRef,
    PublicGalleryItem,
    Snapshot,
    Strict,
    Suggestion,
)

#: Why someone is no longer in the session.
LeaveReason = Literal["left", "connection_lost", "removed"]
#: Why an edge reports a connection gone: a leave reason, or `join_abandoned` (the socket
#: closed while its join was on its way: undone at once, never held as reconnecting; the
#: room hears `connection_lost`).
DepartureReason = LeaveReason | Literal["join_abandoned"]


class ParticipantLeft(Strict):
    """`participant_left`: someone is no longer in the session."""

    identity: Identity
    reason: LeaveReason


class MuteRequested(Strict):
    """`mute_requested`: the host asks the target to mute."""

    kind: Literal["audio", "video"]
    by: str


class Removed(Strict):
    """`removed`: the host removed the target; its connection closes next."""

    reason: str
    by: str


class Replaced(Strict):
    """`replaced`: a newer connection of the same identity took over."""

    reason: str


class SessionEnded(Strict):
    """`session_ended`: the host ended the session, or it was deleted."""

    reason: Literal["ended", "deleted"]
    by: str | None = None


class ActiveSpeakerChanged(Strict):
    """`active_speaker`: whose voice is loudest now (None: nobody)."""

    identity: str | None


class VideoQualityChanged(Strict):
    """`video_quality`: what this participant's link lets it receive changed.

    `level`: "full" (the spotlight in high quality), "reduced" (in low quality) or
    "audio_only"; `paused`: how many venues' video it does not get because of its link;
    `capped`: the control room lowered this venue's quality (the level is its cap).
    """

    level: Literal["full", "reduced", "audio_only"]
    paused: int
    capped: bool = False


class PublisherHint(Strict):
    """`publisher_hint`: the server sees this publisher's uplink lose packets; cap the
    camera's high encoding at `max_bitrate` bit/s (null: no cap)."""

    max_bitrate: int | None


class ReconnectMedia(Strict):
    """`reconnect_media`: the control room asks this client to rebuild its peer connections."""

    by: Literal["control"]


class MediaConnectionState(Strict):
    """`media_connection`: the server side's state of one of a participant's connections."""

    identity: str
    connection: Literal["publish", "subscribe"]
    state: str


class TrackRef(Strict):
    """One m-line of a subscriber offer and whose track it carries."""

    mid: str
    identity: str
    kind: str
    #: The publisher's track id (`live.screen.track` names a shared screen's).
    track: str = ""


class SubscriberOfferEvent(Strict):
    """`subscriber_offer`: the server's offer for the participant's subscribe connection."""

    # An offer has an m-line per forwarded track: far beyond the usual string limit.
    model_config = ConfigDict(extra="forbid", str_max_length=1 << 20)

    sdp: str
    tracks: list[TrackRef]
    #: Echoed in the `subscriber_answer` (an answer to a replaced offer is refused).
    offer_id: str


class RecordingError(Strict):
    """`recording_error`: to the hosts, recording failed or was interrupted."""

    recording_id: str
    error: str


class MediaMoved(Strict):
    """`media_moved`: the room has a new owner; rebuild both peer connections with it.

    Sent after a failover or a hand-over: the media of the old owner is gone, so
    the client publishes again and answers the new owner's subscriber offer.
    """

    owner: NodeRef
    reason: Literal["failover", "handover"]


class Resync(Strict):
    """`resync`: the client's view may have missed events; replace it with this snapshot.

    `media_reset`: the server set this participant's media up anew (it had lost
    track of it): rebuild both peer connections, as after `media_moved`.
    """

    snapshot: Snapshot
    media_reset: bool = False


class Reconnect(Strict):
    """`reconnect`: this node is going away; connect again (to one of `nodes`) and rejoin."""

    reason: Literal["drain"]
    nodes: list[NodeRef] = Field(default_factory=list)


class Lobby(Strict):
    """`lobby`: to hosts and co-hosts, who waits in the lobby now (sent on every change)."""

    waiting: list[LobbyEntry]


class Admitted(Strict):
    """`admitted`: to a connection waiting in the lobby; send `join` again to enter."""

    by: str


class LobbyClosed(Strict):
    """`lobby_closed`: to a connection waiting in the lobby, which closes next."""

    reason: Literal["denied", "timeout", "session_ended", "replaced"]
    by: str | None = None


class CallInQueueChanged(Strict):
    """`call_in_queue`: to hosts, co-hosts and moderators, a broadcast viewer's request to
    speak, new or changed (see `server.rooms.call_ins`)."""

    item: CallIn


class GalleryQueueChanged(Strict):
    """`gallery_queue`: to those who run the gallery's queue, one item posted or handled."""

    item: GalleryItem


class GalleryPublished(Strict):
    """`gallery_item`: to everyone, an approved gallery item (new, or newly answered)."""

    item: PublicGalleryItem


class GalleryOnScreen(Strict):
    """`gallery_on_screen`: to everyone, the gallery item on screen now (None: none)."""

    item: PublicGalleryItem | None


class SuggestionReceived(Strict):
    """`suggestion`: a micro-suggestion, to the host, co-hosts, moderators and its author."""

    suggestion: Suggestion
