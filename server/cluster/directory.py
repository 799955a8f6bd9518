"""RoomDirectory: the rooms this node owns — taking them, running them, letting them go.

A room is taken when a request for it reaches a node and nobody holds its
lease: the node takes the lease, loads the room's snapshot and timeline tail,
and starts its actor. It is let go when it has been empty for a while, when
the node drains (handed to a successor), when it is deleted, or when the lease
turns out to be someone else's (then nothing more is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import server.log_context as log_context
from server.cluster.media_stats import MediaStatsReader
from server.cluster.messages import (
    AdminRequest,
    CallInBusRequest,
    EventRequest,
    GalleryPostRequest,
    JoinRequest,
    LeaveRequest,
    PingRequest,
    ReconcileRequest,
    Request,
    TakeRequest,
)
from server.media import MediaNode
from server.rooms import (
    acks,
    call_ins,
    floor_control,
    gallery,
    media_control,
    membership,
    moderation,
    ownership,
    recording_control,
)
from server.rooms.actor import RoomActor, RoomMoved
from server.rooms.commands import (
    CLIENT_COMMANDS,
    ClientCommand,
    JoinRoom,
    LeaveRoom,
    NodesGone,
    ReconcileNode,
    RunInRoom,
)
from server.rooms.errors import NotFound, RoomError
from server.rooms.models import Caller, Invitee, NodeRef, PersistedRoom
from server.rooms.owned_room import OwnedRoom, OwnerSettings, SelfCommand
from server.rooms.payloads import CallInAsk, GalleryPost, VenueQuality
from server.rooms.ports import Recorder, RoomDelivery
from server.rooms.room_state import SNAPSHOT_TIMELINE_LENGTH, RoomState
from server.rooms.server_events import SessionEnded
from server.state.leases import Renewal, RoomLeases
from server.state.room_writer import RoomWriter
from server.state.store import RedisStore

logger = logging.getLogger(__name__)

#: A join waits this long at most for the roster (it is in its snapshot, not essential).
ROSTER_READ_TIMEOUT = 1.0


@dataclass(frozen=True)
class DirectorySettings:
    """How long rooms are kept and how long letting them go may take."""

    #: A room nobody is in is let go after this long (its lease released).
    idle_seconds: float = 60.0
    #: A hand-over's final write may take this long.
    flush_timeout: float = 5.0
    #: Rooms this node owns at most (None: no cap); placement sends others elsewhere.
    max_rooms: int | None = None


class RoomCapReached(RoomError):
    """This node owns as many rooms as it may (`--max-rooms-per-node`)."""

    status = 503

    def __init__(self) -> None:
        super().__init__(
            "server_full", "every server holds as many sessions as it may; try again shortly"
        )


def not_owner(room_id: str) -> acks.Ack:
    """The ack telling an edge to look the room's owner up again."""
    return acks.error("not_owner", f"this node does not own {room_id!r} now")


class RoomDirectory:
    """Owned rooms of one node, with their actors and writers."""

    def __init__(
        self,
        *,
        node: NodeRef,
        store: RedisStore,
        leases: RoomLeases,
        delivery: RoomDelivery,
        media_node: MediaNode,
        recorder: Recorder | None,
        owner_settings: OwnerSettings,
        settings: DirectorySettings,
        live_nodes: Callable[[], list[NodeRef]],
    ) -> None:
        self.node = node
        self.store = store
        self.leases = leases
        self.delivery = delivery
        self.media_node = media_node
        self.recorder = recorder
        self.owner_settings = owner_settings
        self.settings = settings
        self.live_nodes = live_nodes
        self._actors: dict[str, RoomActor] = {}
        self._writers: dict[str, RoomWriter] = {}
        self._loading: dict[str, asyncio.Task[RoomActor | None]] = {}
        self._empty_since: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: A draining node takes no rooms.
        self.draining = False
        #: Told of each room taken or let go, by kind of change (metrics).
        self.on_ownership_change: Callable[[str], None] = _ignore
        #: Owned rooms' media statistics for the control room (`media_stats` requests).
        self.media_stats = MediaStatsReader()

    # --- looking up ---------------------------------------------------------------------

    def owned(self) -> list[str]:
        """Rooms this node owns now."""
        return list(self._actors)

    def actor(self, room_id: str) -> RoomActor | None:
        """The actor of a room this node owns."""
        actor = self._actors.get(room_id)
        return None if actor is None or actor.stopped else actor

    def participant_count(self) -> int:
        """Participants in this node's rooms (its load)."""
        return sum(len(a.room.participants) for a in self._actors.values())

    # --- taking a room ------------------------------------------------------------------

    async def acquire(self, room_id: str) -> RoomActor | None:
        """Own the room: this node's actor for it, or None if another node holds its lease.

        NotFound if the room does not exist; RoomCapReached if this node owns as many
        rooms as it may. Concurrent calls share one load.
        """
        actor = self.actor(room_id)
        if actor is not None:
            return actor
        if self.draining:
            return None
        task = self._loading.get(room_id)
        if task is None:
            cap = self.settings.max_rooms
            if cap is not None and len(self._actors) + len(self._loading) >= cap:
                raise RoomCapReached()
            task = asyncio.create_task(self._load(room_id), name=f"load {room_id}")
            self._loading[room_id] = task
            task.add_done_callback(lambda _: self._loading.pop(room_id, None))
        return await asyncio.shield(task)

    async def _load(self, room_id: str) -> RoomActor | None:
        if not await self.leases.acquire(room_id):
            return None
        try:
            room = await self.store.get_room(room_id)
            if room is None:
                raise NotFound("room_not_found", "this session no longer exists")
            persisted = await self.store.snapshot(room_id)
            timeline = await self.store.timeline(room_id, count=SNAPSHOT_TIMELINE_LENGTH)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.leases.release(room_id)
            raise
        state = RoomState.from_persisted(room, persisted, timeline)
        # The room, its writer and its actor refer to each other (closures bind late).
        owned: OwnedRoom
        actor: RoomActor

        def snapshot() -> PersistedRoom:
            return owned.persisted()

        def post(command: SelfCommand) -> None:
            actor.post(command)

        writer = RoomWriter(
            self.store.client,
            room_id,
            self.node.id,
            snapshot,
            self._lease_lost,
            lease_ttl_ms=self.leases.ttl_ms,
        )
        owned = OwnedRoom(
            state,
            node=self.node,
            delivery=self.delivery,
            writer=writer,
            media_node=self.media_node,
            recorder=self.recorder,
            settings=self.owner_settings,
            live_nodes=self.live_nodes,
            post=post,
        )
        actor = RoomActor(owned)
        # The room's tasks log as the room's, not as the participant whose request took it.
        log_context.in_room(room_id, writer.start)
        log_context.in_room(room_id, actor.start)
        self._actors[room_id] = actor
        self._writers[room_id] = writer
        previous = (
            persisted.owner if persisted and persisted.incarnation == room.incarnation else None
        )
        handed_over = bool(persisted and persisted.handed_over)
        await actor.run(lambda r: ownership.take_over(r, previous, handed_over))
        self.on_ownership_change(
            "handed_over" if handed_over else "taken_over" if previous else "acquired"
        )
        return actor

    # --- requests -----------------------------------------------------------------------

    async def handle(self, request: Request) -> acks.Ack:
        """Apply a request for a room; `not_owner` when this node does not own it."""
        if isinstance(request, PingRequest):
            return acks.ok(owns=self.actor(request.room) is not None)
        try:
            if isinstance(request, TakeRequest):
                return acks.ok(owns=await self.acquire(request.room) is not None)
            actor = self.actor(request.room)
            if actor is None:
                return not_owner(request.room)
            return await self._apply(actor, request)
        except RoomMoved:
            return not_owner(request.room)
        except RoomError as exc:  # an admin action refused
            return acks.refusal(exc)

    async def _apply(self, actor: RoomActor, request: Request) -> acks.Ack:
        match request:
            case JoinRequest(caller=caller, incarnation=incarnation):
                return await self.join(actor, caller, incarnation)
            case EventRequest(caller=caller, event=event, payload=payload):
                spec = CLIENT_COMMANDS.get(event)
                if spec is None:
                    return acks.error("unknown_event", f"unknown event {event[:64]!r}")
                return await actor.call(
                    ClientCommand(caller, event, spec.schema.model_validate(payload))
                )
            case LeaveRequest(identity=identity, session=session, reason=reason):
                return await actor.call(LeaveRoom(identity, session, reason))
            case ReconcileRequest(node=node, sessions=sessions, joining=joining):
                return await actor.call(ReconcileNode(node, sessions, frozenset(joining)))
            case AdminRequest(action="state"):
                # Read between commands: everything acked so far is in it.
                return acks.ok(state=actor.room.persisted())
            case AdminRequest(action="media_stats"):
                stats = await self.media_stats.read(actor.room)
                stats["node"] = {"id": self.node.id, "rooms": len(self._actors)}
                return acks.ok(stats=stats)
            case AdminRequest(action="reconnect", target=target):
                return await actor.run(lambda r: media_control.ask_to_reconnect(r, target))
            case AdminRequest(action="venue_quality", target=target, venue_quality=cap):
                quality = cap or VenueQuality()
                return await actor.run(
                    lambda r: media_control.set_venue_quality(r, target, quality)
                )
            case AdminRequest(action="pin", target=target):
                return await actor.run(lambda r: floor_control.pin_by_control(r, target or None))
            case AdminRequest(action="delete"):
                await self.delete(request.room)
                return acks.ok()
            case AdminRequest(action="start_recording", by=by):
                update = await actor.run(lambda r: recording_control.start(r, by), urgent=False)
                return acks.ok(recording=update.payload)
            case AdminRequest(action="stop_recording"):
                update = await actor.run(recording_control.stop, urgent=False)
                return acks.ok(recording=update.payload)
            case GalleryPostRequest(poster=poster, post=post):
                body = GalleryPost.model_validate(post)
                return await actor.run(lambda r: gallery.post(r, poster, body), urgent=False)
            case CallInBusRequest(op=op, viewer=viewer, handle_digest=digest, ask=ask):
                details = CallInAsk.model_validate(ask) if ask is not None else None
                return await actor.run(
                    lambda r: call_ins.viewer_request(r, op, digest, viewer, details),
                    urgent=False,
                )
        return acks.error("unknown_request", "this node does not understand the request")

    async def join(self, actor: RoomActor, caller: Caller, incarnation: str) -> acks.Ack:
        """Admit a socket to an owned room.

        The roster (who was invited, shown in the snapshot) is read from Redis while the
        room admits the socket, outside the room's order, rather than before: the ack
        already waits for the room's write-behind, and a second round trip in a row
        would add its own delay to every join.
        """
        roster_read = asyncio.create_task(self._read_roster(actor.room_id))
        try:
            ack = await actor.call(JoinRoom(caller, incarnation))
        except BaseException:
            roster_read.cancel()
            raise
        roster = await roster_read
        if roster is not None and acks.is_ok(ack):
            ack["snapshot"]["roster"] = [invitee.model_dump(mode="json") for invitee in roster]
            actor.post(RunInRoom(lambda room: membership.keep_roster(room, roster)))
        return ack

    async def _read_roster(self, room_id: str) -> list[Invitee] | None:
        """The room's roster; None if Redis cannot give it in time (the join goes on with
        the roster the room saw last)."""
        try:
            async with asyncio.timeout(ROSTER_READ_TIMEOUT):
                return await self.store.roster(room_id)
        except Exception as exc:
            logger.warning("roster of %s not read (%s)", room_id, exc)
            return None

    # --- letting rooms go ---------------------------------------------------------------

    async def delete(self, room_id: str) -> None:
        """Delete an owned room: everyone told and disconnected, then every key removed."""
        actor = self._actors.pop(room_id, None)
        writer = self._writers.pop(room_id, None)
        if actor is not None:
            with contextlib.suppress(RoomMoved):
                await actor.run(
                    lambda r: moderation.close_session(r, SessionEnded(reason="deleted"))
                )
            await actor.stop()
        if writer is not None:
            await writer.close()
        await self.store.delete_room(room_id)
        await self.leases.release(room_id)
        if actor is not None:
            self.on_ownership_change("deleted")

    async def release(self, room_id: str) -> bool:
        """Hand the room over: its state written with this node's last word, lease released.

        True if the final state was written (the successor starts from it).
        """
        actor = self._actors.pop(room_id, None)
        writer = self._writers.pop(room_id, None)
        self._empty_since.pop(room_id, None)
        if actor is None or writer is None:
            return False
        self.on_ownership_change("released")
        with contextlib.suppress(RoomMoved):
            await actor.run(ownership.hand_over)
        await actor.stop()
        written = await writer.flush(self.settings.flush_timeout)
        await writer.close()
        if written:
            with contextlib.suppress(Exception):
                await self.leases.release(room_id)
        return written

    def _lease_lost(self, room_id: str) -> None:
        """A fenced write found another node's lease: stop owning the room, write nothing."""
        self._spawn(self._drop(room_id))

    async def _drop(self, room_id: str) -> None:
        actor = self._actors.pop(room_id, None)
        writer = self._writers.pop(room_id, None)
        self._empty_since.pop(room_id, None)
        if writer is not None:
            await writer.close()
        if actor is not None:
            self.on_ownership_change("lost")
            logger.warning("room %s: another node owns it now; letting it go", room_id)
            with contextlib.suppress(RoomMoved):
                await actor.run(ownership.hand_over)
            await actor.stop()

    # --- upkeep (the node's heartbeat) -------------------------------------------------

    async def renew(self) -> None:
        """Renew the leases of owned rooms; drop those another node took meanwhile."""
        owned = self.owned()
        results = await self.leases.renew(owned)
        for room_id, result in results.items():
            if result is Renewal.LOST:
                await self._drop(room_id)
            elif result is Renewal.RETAKEN:
                self.on_ownership_change("retaken")
                logger.info("room %s: lease taken again after it expired", room_id)

    def participant_nodes(self) -> set[str]:
        """Nodes holding participants of owned rooms."""
        return {node for actor in self._actors.values() for node in actor.room.participant_nodes()}

    def nodes_gone(self, dead: frozenset[str]) -> None:
        """Tell each owned room which nodes died (their participants go)."""
        if not dead:
            return
        for actor in self._actors.values():
            gone = dead & actor.room.participant_nodes()
            if gone:
                actor.post(NodesGone(frozenset(gone)))

    async def release_idle(self) -> None:
        """Let go of rooms that have been empty for `idle_seconds`."""
        now = time.monotonic()
        for room_id, actor in list(self._actors.items()):
            if actor.room.participants:
                self._empty_since.pop(room_id, None)
                continue
            since = self._empty_since.setdefault(room_id, now)
            if now - since >= self.settings.idle_seconds:
                logger.info("room %s: empty for a while; released", room_id)
                await self.release(room_id)

    async def close(self) -> None:
        """Stop every actor (after a drain, or at exit); writes what it can first."""
        for room_id in self.owned():
            try:
                async with asyncio.timeout(self.settings.flush_timeout * 2):
                    await self.release(room_id)
            except TimeoutError:
                logger.warning("room %s not released in time; its lease will run out", room_id)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ignore(change: str) -> None:
    """The default ownership observer: nobody is told."""
