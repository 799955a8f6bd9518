"""Every command a room's owner accepts: the client events (one table) and the internal ones.

`CLIENT_COMMANDS` is the single table of client events: its payload schema and
its handler. The signaling edge validates against the schemas; the owner's
actor dispatches to the handlers. `join` and `leave` change the connection's
own state as well, so they are commands of their own (`JoinRoom`, `LeaveRoom`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from server.rooms import (
    acks,
    broadcast_control,
    call_ins,
    floor_control,
    gallery,
    lobby,
    media_control,
    moderation,
    payloads,
    recording_control,
    screen_share,
    stage_control,
    suggestions,
)
from server.rooms.models import Caller, Participant
from server.rooms.owned_room import OwnedRoom, SelfCommand
from server.rooms.ports import RecordingUpdate, SessionRef
from server.rooms.server_events import DepartureReason

P = TypeVar("P", bound=payloads.Payload)
T = TypeVar("T")


@dataclass(frozen=True)
class CommandSpec(Generic[P]):
    """One client event: its payload schema and the handler the owner runs."""

    schema: type[P]
    handle: Callable[[OwnedRoom, Participant, P], Awaitable[acks.Ack]]
    #: Runs outside the room's one-at-a-time order (one at a time per participant):
    #: media negotiation is slow and touches only the caller's own connections.
    concurrent: bool = False
    #: False: also accepted from an invitee who has not joined (over the REST API, with
    #: their join token: a suggestion submitted before the session).
    joined: bool = True


#: The client events a joined participant may send, and what each does.
CLIENT_COMMANDS: dict[str, CommandSpec[Any]] = {
    "raise_hand": CommandSpec(payloads.RaiseHand, floor_control.raise_hand),
    "lower_hand": CommandSpec(payloads.LowerHand, floor_control.lower_hand),
    "grant_floor": CommandSpec(payloads.GrantFloor, floor_control.grant_floor),
    "revoke_floor": CommandSpec(payloads.RevokeFloor, floor_control.revoke_floor),
    "next_speaker": CommandSpec(payloads.NextSpeaker, floor_control.next_speaker),
    "advance_agenda": CommandSpec(payloads.AdvanceAgenda, floor_control.advance_agenda),
    "set_lock": CommandSpec(payloads.SetLock, floor_control.set_lock),
    "request_mute": CommandSpec(payloads.RequestMute, moderation.request_mute),
    "remove_participant": CommandSpec(payloads.RemoveParticipant, moderation.remove_participant),
    "end_session": CommandSpec(payloads.EndSession, moderation.end_session),
    "mute_all": CommandSpec(payloads.MuteAll, moderation.mute_all),
    "rename_participant": CommandSpec(payloads.RenameParticipant, moderation.rename_participant),
    "pin": CommandSpec(payloads.Pin, floor_control.pin),
    "admit": CommandSpec(payloads.Admit, lobby.admit),
    "start_screen_share": CommandSpec(payloads.StartScreenShare, screen_share.start),
    "stop_screen_share": CommandSpec(payloads.StopScreenShare, screen_share.stop),
    "deny": CommandSpec(payloads.Deny, lobby.deny),
    "move_in_queue": CommandSpec(payloads.MoveInQueue, floor_control.move_in_queue),
    "extend_floor": CommandSpec(payloads.ExtendFloor, floor_control.extend_floor),
    "chat": CommandSpec(payloads.Chat, moderation.chat),
    "media_state": CommandSpec(payloads.MediaState, moderation.media_state),
    "gallery_post": CommandSpec(payloads.GalleryPost, gallery.post),
    "gallery_approve": CommandSpec(payloads.GalleryApprove, gallery.approve),
    "gallery_reject": CommandSpec(payloads.GalleryReject, gallery.reject),
    "gallery_answer": CommandSpec(payloads.GalleryAnswer, gallery.answer),
    "gallery_show": CommandSpec(payloads.GalleryShow, gallery.show),
    "suggestion_submit": CommandSpec(payloads.SuggestionSubmit, suggestions.submit, joined=False),
    "start_recording": CommandSpec(payloads.StartRecording, recording_control.start_recording),
    "stop_recording": CommandSpec(payloads.StopRecording, recording_control.stop_recording),
    "publish_offer": CommandSpec(payloads.PublishOffer, media_control.publish_offer, True),
    "subscriber_answer": CommandSpec(
        payloads.SubscriberAnswer, media_control.subscriber_answer, True
    ),
    "ice_candidate": CommandSpec(payloads.IceCandidate, media_control.ice_candidate, True),
    "media_restart": CommandSpec(payloads.MediaRestart, media_control.media_restart, True),
    # The stage seat (连线): server.rooms.stage.
    "stage_invite": CommandSpec(payloads.StageInvite, stage_control.invite),
    "stage_accept": CommandSpec(payloads.StageAccept, stage_control.accept),
    "stage_decline": CommandSpec(payloads.StageDecline, stage_control.decline),
    "stage_end": CommandSpec(payloads.StageEnd, stage_control.end),
    # Broadcast viewers who asked to speak: server.rooms.call_ins.
    "call_in_invite": CommandSpec(payloads.CallInInvite, call_ins.invite),
    "call_in_dismiss": CommandSpec(payloads.CallInDismiss, call_ins.dismiss),
    "video_view": CommandSpec(payloads.VideoView, media_control.video_view),
    # The live broadcast (server/broadcast/).
    "broadcast_pause": CommandSpec(payloads.BroadcastPause, broadcast_control.pause),
    "broadcast_resume": CommandSpec(payloads.BroadcastResume, broadcast_control.resume),
}

#: Events that change the connection itself, with their (empty) payload schemas.
CONNECTION_EVENTS: dict[str, type[payloads.Payload]] = {
    "join": payloads.Join,
    "leave": payloads.Leave,
    "refresh_ice_servers": payloads.RefreshIceServers,
}


@dataclass(frozen=True)
class ClientCommand:
    """A joined participant's event, with its validated payload."""

    caller: Caller
    event: str
    payload: payloads.Payload


@dataclass(frozen=True)
class JoinRoom:
    """A connection asks to join; `incarnation` is the one its token names."""

    caller: Caller
    incarnation: str


@dataclass(frozen=True)
class LeaveRoom:
    """A connection left on purpose, or closed."""

    identity: str
    session: str
    reason: DepartureReason


@dataclass(frozen=True)
class ReconcileNode:
    """A node lists the sockets it holds in the room; the owner makes itself agree.

    `joining` are sessions whose join is on its way: kept, not admitted here.
    """

    node: str
    sessions: list[Caller]
    joining: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ResyncSessions:
    """These connections may have missed events: send each the whole session again."""

    sessions: list[SessionRef]


@dataclass(frozen=True)
class NodesGone:
    """These nodes died; their sockets (and participants) with them."""

    nodes: frozenset[str]


@dataclass(frozen=True)
class RecordingChanged:
    """The recorder reports a change; `failed` reports only that it failed (hosts are told)."""

    update: RecordingUpdate
    failed: bool = False


@dataclass(frozen=True)
class RunInRoom(Generic[T]):
    """Run `action` in the room's order (admin actions, takeover and hand-over steps)."""

    action: Callable[[OwnedRoom], Awaitable[T]]
    #: Run ahead of participants' commands (the room's own upkeep).
    urgent: bool = False
    name: str = field(default="action")


#: Everything the actor accepts.
Command = (
    ClientCommand
    | JoinRoom
    | LeaveRoom
    | ReconcileNode
    | ResyncSessions
    | NodesGone
    | RecordingChanged
    | RunInRoom[Any]
    | SelfCommand
)
