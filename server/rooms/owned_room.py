"""OwnedRoom: one room as its owner node holds it, and every effect a change can have.

The actor (`server.rooms.actor`) calls the command handlers one at a time with
this object; handlers decide with the pure rules (`floor`, `admission`) and
apply through the methods here, which keep the rest consistent: the broadcast
sequence, the write-behind, the timeline, the media's pinned video, the floor
timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from server.media import MediaEvent, MediaNode
from server.rooms.errors import Conflict, Forbidden, NotFound
from server.rooms.limits import IdentityLimits, LimitSettings
from server.rooms.models import (
    Caller,
    Invitee,
    LiveState,
    LobbyEntry,
    NodeRef,
    Participant,
    PersistedRoom,
    Role,
    Room,
    Snapshot,
    TimelineEntry,
)
from server.rooms.ports import Recorder, RoomDelivery, SessionRef, StateWriter
from server.rooms.room_media import RoomMedia
from server.rooms.room_state import RoomState
from server.rooms.suggestion_rules import visible, visible_timeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnerSettings:
    """Limits every room of a node applies."""

    #: Participants at once (hosts and reconnecting participants are always let in).
    max_participants: int = 500
    limits: LimitSettings = field(default_factory=LimitSettings)
    #: A participant whose socket dropped is held (reconnecting) this long before it is
    #: a leave; 0 makes a dropped socket a leave at once.
    reconnect_grace_seconds: float = 20.0


@dataclass(frozen=True)
class ExpireFloor:
    """Internal: a timed floor's deadline has come (ignored if the floor changed since)."""

    grant_id: str


@dataclass(frozen=True)
class MediaEventArrived:
    """Internal: the SFU reported an event for this room."""

    event: MediaEvent


@dataclass(frozen=True)
class ResumeRecording:
    """Internal: try (again) to resume the recording the room had before it moved here."""

    attempt: int
    dead_writer: str | None


@dataclass(frozen=True)
class ExpireStageInvite:
    """Internal: an invitation on stage was not answered in time (ignored if it was)."""

    invite_id: str


@dataclass(frozen=True)
class ExpireReconnect:
    """Internal: the reconnect grace of a dropped connection is over (ignored if it came back)."""

    identity: str
    session: str


@dataclass(frozen=True)
class MediaRecovering:
    """Internal: a participant is rebuilding its peer connections (`media_restart`).

    `publishes`: it had a publish connection, so it is back once that one is connected again.
    """

    identity: str
    session: str
    publishes: bool


@dataclass(frozen=True)
class CheckMediaFlow:
    """Internal: time to look whether each publisher's packets still arrive."""


#: Internal commands an owned room posts to its own actor.
SelfCommand = (
    ExpireFloor
    | MediaEventArrived
    | ResumeRecording
    | ExpireReconnect
    | MediaRecovering
    | CheckMediaFlow
    | ExpireStageInvite
)


def require_host(actor: Participant) -> None:
    """Refuse anyone but the host."""
    if actor.role is not Role.HOST:
        raise Forbidden("host_only", "only the host can do this")


def require_moderator(actor: Participant) -> None:
    """Refuse anyone but the host and co-hosts (the floor, the lobby, moderation)."""
    if not actor.role.moderates:
        raise Forbidden("host_only", "only the host or a co-host can do this")


def require_queue_runner(actor: Participant) -> None:
    """Refuse anyone but those who run the queues: host, co-hosts, moderators."""
    if not actor.role.runs_queues:
        # The same code as the host's own commands: clients treat both alike.
        raise Forbidden("host_only", "only the host, a co-host or a moderator can do this")


def loop_time() -> float:
    """The event loop's clock (seconds; only differences mean anything)."""
    return asyncio.get_running_loop().time()


def _now() -> float:
    return asyncio.get_running_loop().time()


def now_ms() -> float:
    """Wall-clock milliseconds since the epoch (deadlines and timeline times use this unit)."""
    return time.time() * 1000.0


class OwnedRoom:
    """A room's state on its owner, with the media, recorder and delivery it drives."""

    def __init__(
        self,
        state: RoomState,
        *,
        node: NodeRef,
        delivery: RoomDelivery,
        writer: StateWriter,
        media_node: MediaNode,
        recorder: Recorder | None,
        settings: OwnerSettings,
        live_nodes: Callable[[], list[NodeRef]],
        post: Callable[[SelfCommand], None],
    ) -> None:
        self.state = state
        self.node = node
        self.delivery = delivery
        self.writer = writer
        self.recorder = recorder
        self.settings = settings
        self.limits = IdentityLimits(settings.limits)
        self._live_nodes = live_nodes
        self._post = post
        self.media = RoomMedia(media_node, state.room.id, lambda e: post(MediaEventArrived(e)))
        #: The recording change the room told last (id, state, part): each is told once.
        self.last_recording_change: tuple[str, str, int] | None = None
        #: Set when this node hands the room over (its last snapshot says so).
        self.handed_over = False
        #: Who was invited (read at each join; tokens are issued on any node).
        self.roster: list[Invitee] = []
        self._floor_timer: asyncio.TimerHandle | None = None
        #: The grant and deadline the timer is set for (an extension moves the deadline).
        self._floor_timer_grant: tuple[str, float] | None = None
        self._later: list[asyncio.TimerHandle] = []
        #: identity => whether its media is back only once it publishes again (see
        #: reconnection.py); not persisted: a new owner sets everyone's media up anew.
        self.media_waits_for_publish: dict[str, bool] = {}
        #: identity => (packets received from it, loop time they last grew): publishers
        #: whose packets stopped are waited for (reconnection.check_media_flow).
        self.media_flow: dict[str, tuple[int, float]] = {}
        self.media_flow_watched = False

    # --- reading ------------------------------------------------------------------------

    @property
    def room(self) -> Room:
        """The room's definition."""
        return self.state.room

    @property
    def room_id(self) -> str:
        """The room's id."""
        return self.state.room.id

    @property
    def live(self) -> LiveState:
        """The live state now."""
        return self.state.live

    @property
    def participants(self) -> dict[str, Participant]:
        """Who is in the session, by identity, in joining order."""
        return self.state.participants

    def current(self, caller: Caller) -> Participant:
        """The caller's record, if its connection is still the participant's current one."""
        participant = self.state.participants.get(caller.identity)
        if participant is None or participant.session != caller.session:
            raise Conflict("not_joined", "you are no longer in this session")
        return participant

    def current_or_invitee(self, caller: Caller) -> Participant:
        """The caller's record if it is joined on this connection, else the invitee its token
        names as a participant on no connection (commands allowed before joining)."""
        participant = self.state.participants.get(caller.identity)
        if participant is not None and participant.session == caller.session:
            return participant
        return Participant(**caller.model_dump(), joined_at=0.0)

    def present(self, identity: str) -> Participant:
        """A participant who is in the session now; NotFound otherwise."""
        participant = self.state.participants.get(identity)
        if participant is None:
            raise NotFound("participant_not_found", f"{identity!r} is not in the session")
        return participant

    def require_open(self) -> None:
        """Refuse when the session has ended."""
        if self.state.live.status == "ended":
            raise Conflict("session_ended", "the session has ended")

    def snapshot(self, you: Participant) -> Snapshot:
        """The whole session as it is now, for one participant."""
        return Snapshot(
            room=self.state.room,
            you=you,
            participants=list(self.state.participants.values()),
            roster=self.roster,
            live=self.state.live,
            timeline=visible_timeline(self.state.timeline, you),
            server_time=now_ms(),
            seq=self.state.seq,
            owner=self.node,
            nodes=self._live_nodes(),
            active_speaker=self.media.active_speaker,
            lobby=self.lobby_entries() if you.role.moderates else [],
            gallery=[i.public() for i in self.state.gallery.values() if i.status == "approved"],
            gallery_on_screen=self.state.gallery_on_screen,
            gallery_queue=list(self.state.gallery.values()) if you.role.runs_queues else [],
            suggestions=visible(self.state.suggestions.values(), you),
            call_ins=(
                [c.for_moderators() for c in self.state.call_ins.values()]
                if you.role.runs_queues
                else []
            ),
        )

    def lobby_entries(self) -> list[LobbyEntry]:
        """Who waits in the lobby, as hosts see them (without their connections)."""
        return [
            LobbyEntry.model_validate(w.model_dump(exclude={"session", "node"}))
            for w in self.state.lobby.values()
        ]

    def persisted(self) -> PersistedRoom:
        """The state to write behind, naming this node as its owner."""
        return self.state.persisted(self.node.id, self.handed_over)

    def participant_nodes(self) -> frozenset[str]:
        """The nodes holding the participants' sockets."""
        return frozenset(p.node for p in self.state.participants.values())

    def moderators(self) -> list[Participant]:
        """The hosts and co-hosts in the session now."""
        return [p for p in self.state.participants.values() if p.role.moderates]

    def queue_runners(self) -> list[Participant]:
        """The hosts, co-hosts and moderators in the session now."""
        return [p for p in self.state.participants.values() if p.role.runs_queues]

    # --- effects --------------------------------------------------------------------------

    def touch(self) -> None:
        """The state changed: have it written behind."""
        self.writer.changed()

    async def broadcast(self, event: str, payload: BaseModel) -> None:
        """Send an event to everyone in the session, numbered in the room's sequence."""
        self.state.seq += 1
        await self.delivery.broadcast(
            self.room_id, self.state.seq, event, payload, self.participant_nodes()
        )

    async def send(self, to: Participant | SessionRef, event: str, payload: BaseModel) -> None:
        """Send an event to one connection."""
        target = SessionRef.of(to) if isinstance(to, Participant) else to
        await self.delivery.send(self.room_id, target, event, payload)

    async def close_connection(self, to: Participant | SessionRef, reason: str) -> None:
        """Close one connection, wherever it is."""
        target = SessionRef.of(to) if isinstance(to, Participant) else to
        await self.delivery.close(self.room_id, target, reason)

    async def timeline(
        self, event_type: str, data: dict[str, object], *, tell: bool = True
    ) -> TimelineEntry:
        """Add an entry to the session's timeline and tell everyone (unless `tell` is
        False: the entry is kept, and reaches clients only in later snapshots)."""
        entry_id = self.state.clock.next_id()
        entry = TimelineEntry(
            id=entry_id, ts=float(entry_id.split("-", 1)[0]), type=event_type, data=data
        )
        self.state.timeline.append(entry)
        self.writer.append(entry)
        if tell:
            await self.broadcast("timeline", entry)
        return entry

    async def change_live(self, change: Callable[[LiveState], LiveState]) -> tuple[LiveState, bool]:
        """Apply a pure rule to the live state; on a real change, version it and tell everyone."""
        current = self.state.live
        proposed = change(current)
        if proposed == current:
            return current, False
        updated = proposed.model_copy(update={"version": current.version + 1})
        self.state.live = updated
        self.touch()
        self.media.set_floor(
            updated.floor.identity if updated.floor else None,
            updated.pinned,
            updated.screen.identity if updated.screen else None,
        )
        floor_moved = (current.floor and current.floor.identity) != (
            updated.floor and updated.floor.identity
        )
        if floor_moved:
            # Guests publish only while they hold the floor: a new holder may publish before
            # it hears of the change; one whose turn ended is cut off after it is told (its
            # page drops the connection itself instead of seeing it fail).
            await self.media.apply_publish_rights(withdraw=False)
        self._schedule_floor_expiry()
        await self.broadcast("live_state", updated)
        if floor_moved:
            await self.media.apply_publish_rights()
        if current.screen is not None and updated.screen is None:
            # However it ended (stopped, the turn ended, the sharer left): the archive's
            # chapters need to know.
            await self.timeline("screen_share_stopped", {"identity": current.screen.identity})
        return updated, True

    # --- the floor timer -----------------------------------------------------------------

    def _schedule_floor_expiry(self) -> None:
        grant = self.state.live.floor
        timed = (
            (grant.grant_id, grant.deadline)
            if grant is not None and grant.deadline is not None
            else None
        )
        if timed == self._floor_timer_grant:
            return
        self._cancel_floor_timer()
        if grant is None or grant.deadline is None:
            return
        delay = max(0.0, (grant.deadline - now_ms()) / 1000.0)
        self._floor_timer_grant = timed
        self._floor_timer = asyncio.get_running_loop().call_later(
            delay, self._post, ExpireFloor(grant.grant_id)
        )

    def post(self, command: SelfCommand) -> None:
        """Post a command to the room's own actor (from work running beside its order)."""
        self._post(command)

    def post_later(self, delay: float, command: SelfCommand) -> None:
        """Post a command to the room's own actor after `delay` seconds."""
        self._later = [h for h in self._later if not h.cancelled() and h.when() > _now()]
        self._later.append(asyncio.get_running_loop().call_later(delay, self._post, command))

    def floor_timer_fired(self, grant_id: str) -> None:
        """The timer for `grant_id` ran; forget it (a new one is set on the next change)."""
        if self._floor_timer_grant is not None and self._floor_timer_grant[0] == grant_id:
            self._floor_timer = None
            self._floor_timer_grant = None

    def restart_timers(self) -> None:
        """After a takeover: time the floor that was granted before (it may be due already)."""
        self._schedule_floor_expiry()

    def restart_reconnect_timers(self) -> None:
        """After a takeover: time the grace of those whose connection had dropped (counted
        afresh from now)."""
        for p in self.state.participants.values():
            if p.reconnecting == "connection_lost":
                self.post_later(
                    self.settings.reconnect_grace_seconds, ExpireReconnect(p.identity, p.session)
                )

    def _cancel_floor_timer(self) -> None:
        if self._floor_timer is not None:
            self._floor_timer.cancel()
        self._floor_timer = None
        self._floor_timer_grant = None

    def cancel_timers(self) -> None:
        """Stop the floor timer and anything posted for later (the room is closing)."""
        self._cancel_floor_timer()
        for handle in self._later:
            handle.cancel()
        self._later.clear()
