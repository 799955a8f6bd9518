"""RoomRouter: how this node's sockets reach their rooms' owners, and how owners reach them.

A socket may be on any node. Its commands go to the room's owner: the local
actor when this node owns the room, otherwise a request over the bus to the
node holding the room's lease. Nobody holding it means the room is placed on
the least loaded node (placement.py) — unless its last owner is alive and only
lost its lease to a Redis outage: it keeps the room, and a last owner that does
not answer keeps it until it is judged dead. A dead owner's lease runs out
within the lease TTL; requests meanwhile wait for it (within their budget)
instead of failing at once.

Owners' events for this node's sockets arrive on the bus and are handed to the
signaling edge. Whenever this node cannot be sure its rooms' owners heard
everything (its bus connection came back, a room changed owner, a broadcast
was missed, a leave could not be delivered), it reconciles: it sends the owner
the list of sockets it holds, and the owner makes the room agree and resends
each socket the whole session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from server.cluster.bus import Bus, NodeUnreachable
from server.cluster.directory import RoomCapReached, RoomDirectory
from server.cluster.local_sockets import LocalSockets
from server.cluster.messages import (
    AdminAction,
    AdminRequest,
    BusMessage,
    CallInBusRequest,
    Envelope,
    EventRequest,
    GalleryPostRequest,
    JoinRequest,
    LeaveRequest,
    PingRequest,
    ReconcileRequest,
    Request,
    RoomBroadcast,
    SessionClose,
    SessionEvent,
    TakeRequest,
)
from server.cluster.placement import Placement
from server.rooms import acks, call_ins, gallery
from server.rooms.actor import RoomActor, RoomMoved
from server.rooms.commands import ClientCommand, LeaveRoom, ReconcileNode
from server.rooms.errors import NotFound, RoomError
from server.rooms.models import Caller, Participant
from server.rooms.owned_room import OwnedRoom
from server.rooms.payloads import CallInAsk, CallInOp, GalleryPost, Payload, VenueQuality
from server.rooms.server_events import DepartureReason
from server.state.leases import RoomLeases
from server.state.store import RedisStore

logger = logging.getLogger(__name__)

LocalCall = Callable[[RoomActor], Awaitable[acks.Ack]]


@dataclass(frozen=True)
class RouterSettings:
    """Time budgets of requests to owners."""

    #: Waiting for one reply from another node.
    reply_timeout: float = 5.0
    #: Reaching an owner at all, including waiting out a dead owner's lease (clients wait
    #: 10 s for an ack, so this stays below that and they get a clear answer).
    budget: float = 8.0
    #: Asking a room's last owner whether it still owns the room.
    ping_timeout: float = 1.0
    #: Asking another node to take a room nobody owns (it loads the room first).
    take_timeout: float = 2.0


def unavailable() -> acks.Ack:
    """The ack of a command that could not reach the room's owner (retry later)."""
    return acks.error("unavailable", "the session's server cannot be reached now; try again")


class RoomRouter:
    """The edge side of the cluster: routes commands, receives owners' events."""

    def __init__(
        self,
        *,
        node_id: str,
        directory: RoomDirectory,
        bus: Bus,
        leases: RoomLeases,
        store: RedisStore,
        local: LocalSockets,
        placement: Placement,
        judge_dead: Callable[[Iterable[str]], Awaitable[frozenset[str]]],
        settings: RouterSettings,
    ) -> None:
        self.node_id = node_id
        self.placement = placement
        #: Which of these nodes are dead (NodeLiveness.dead: none while Redis was just away).
        self.judge_dead = judge_dead
        self.directory = directory
        self.bus = bus
        self.leases = leases
        self.store = store
        self.local = local
        self.settings = settings
        self._owners: dict[str, str] = {}
        #: room => (owner, last broadcast number) of the broadcasts this node received.
        self._heard: dict[str, tuple[str, int]] = {}
        self._pending_reconcile: set[str] = set()
        self._reconciling: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- commands from this node's sockets ---------------------------------------------

    async def join(self, room_id: str, caller: Caller, incarnation: str) -> acks.Ack:
        """Ask the room's owner to admit a socket; the ack carries the snapshot."""
        return await self._request(
            room_id,
            lambda actor: self.directory.join(actor, caller, incarnation),
            lambda rid: JoinRequest(
                id=rid, reply_to=self.node_id, room=room_id, caller=caller,
                incarnation=incarnation,
            ),
        )  # fmt: skip

    async def event(self, room_id: str, caller: Caller, event: str, payload: Payload) -> acks.Ack:
        """A joined socket's command to its room."""
        return await self._request(
            room_id,
            lambda actor: actor.call(ClientCommand(caller, event, payload)),
            lambda rid: EventRequest(
                id=rid, reply_to=self.node_id, room=room_id, caller=caller, event=event,
                payload=payload.model_dump(mode="json"),
            ),
        )  # fmt: skip

    async def leave(self, room_id: str, caller: Caller, reason: DepartureReason) -> None:
        """A joined socket left or closed; if the owner cannot be told, reconcile later."""
        ack = await self._request(
            room_id,
            lambda actor: actor.call(LeaveRoom(caller.identity, caller.session, reason)),
            lambda rid: LeaveRequest(
                id=rid, reply_to=self.node_id, room=room_id, identity=caller.identity,
                session=caller.session, reason=reason,
            ),
        )  # fmt: skip
        if not acks.is_ok(ack) and ack["error"]["code"] != "room_not_found":
            self._pending_reconcile.add(room_id)

    async def admin(
        self,
        room_id: str,
        action: AdminAction,
        by: str = "",
        budget: float | None = None,
        target: str = "",
        venue_quality: VenueQuality | None = None,
    ) -> acks.Ack:
        """An organizer's action through the REST API, applied by the room's owner."""
        if action == "delete" and await self.leases.holder(room_id) is None:
            # Nobody owns it: nothing to tell, no media to close.
            await self.store.delete_room(room_id)
            return acks.ok()

        async def local(actor: RoomActor) -> acks.Ack:
            request = AdminRequest(
                id="",
                reply_to=self.node_id,
                room=room_id,
                action=action,
                by=by,
                target=target,
                venue_quality=venue_quality,
            )
            return await self.directory.handle(request)

        return await self._request(
            room_id,
            local,
            lambda rid: AdminRequest(
                id=rid,
                reply_to=self.node_id,
                room=room_id,
                action=action,
                by=by,
                target=target,
                venue_quality=venue_quality,
            ),
            budget,
        )

    async def gallery_post(self, room_id: str, poster: Participant, post: GalleryPost) -> acks.Ack:
        """A live broadcast's viewer posts to the room's gallery (the owner queues it)."""

        async def local(actor: RoomActor) -> acks.Ack:
            async def apply(owned: OwnedRoom) -> acks.Ack:
                return await gallery.post(owned, poster, post)

            try:
                return await actor.run(apply, urgent=False)
            except RoomError as exc:
                return acks.refusal(exc)

        return await self._request(
            room_id,
            local,
            lambda rid: GalleryPostRequest(
                id=rid, reply_to=self.node_id, room=room_id, poster=poster,
                post=post.model_dump(mode="json"),
            ),
        )  # fmt: skip

    async def call_in(
        self,
        room_id: str,
        op: CallInOp,
        handle_digest: str,
        viewer: str = "",
        ask: CallInAsk | None = None,
    ) -> acks.Ack:
        """A live broadcast's viewer asks to speak, or about that request (the owner
        applies it; see `server.rooms.call_ins`)."""

        async def local(actor: RoomActor) -> acks.Ack:
            async def apply(owned: OwnedRoom) -> acks.Ack:
                return await call_ins.viewer_request(owned, op, handle_digest, viewer, ask)

            try:
                return await actor.run(apply, urgent=False)
            except RoomError as exc:
                return acks.refusal(exc)

        return await self._request(
            room_id,
            local,
            lambda rid: CallInBusRequest(
                id=rid, reply_to=self.node_id, room=room_id, op=op, viewer=viewer,
                handle_digest=handle_digest,
                ask=ask.model_dump(mode="json") if ask is not None else None,
            ),
        )  # fmt: skip

    async def reconcile(self, room_id: str, why: str = "asked") -> None:
        """Tell the room's owner which sockets this node holds in the room (see module doc)."""
        logger.info("room %s: reconciling with its owner (%s)", room_id, why)
        if room_id in self._reconciling:
            self._pending_reconcile.add(room_id)
            return
        self._reconciling.add(room_id)
        self._pending_reconcile.discard(room_id)
        try:
            # The lists are taken as each attempt is sent, never before a wait: a list
            # older than a join the owner already applied would undo that join.
            ack = await self._request(
                room_id,
                lambda actor: actor.call(
                    ReconcileNode(
                        self.node_id,
                        self.local.sessions_in(room_id),
                        frozenset(self.local.joining_in(room_id)),
                    )
                ),
                lambda rid: ReconcileRequest(
                    id=rid, reply_to=self.node_id, room=room_id, node=self.node_id,
                    sessions=self.local.sessions_in(room_id),
                    joining=self.local.joining_in(room_id),
                ),
            )  # fmt: skip
            if not acks.is_ok(ack) and ack["error"]["code"] != "room_not_found":
                self._pending_reconcile.add(room_id)
        except Exception:
            logger.exception("reconciling room %s failed", room_id)
            self._pending_reconcile.add(room_id)
        finally:
            self._reconciling.discard(room_id)

    # --- finding the owner -------------------------------------------------------------

    async def _request(
        self,
        room_id: str,
        local: LocalCall,
        remote: Callable[[str], Request],
        budget: float | None = None,
    ) -> acks.Ack:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.budget if budget is None else budget)
        delay = 0.1
        while True:
            try:
                owner = await self._owner_of(room_id)
            except RoomError as exc:
                return acks.refusal(exc)
            except Exception as exc:  # Redis unreachable: the owner cannot be looked up
                logger.debug("owner of %s not found: %s", room_id, exc)
                owner = None
            if owner == self.node_id:
                actor = self.directory.actor(room_id)
                if actor is not None:
                    with contextlib.suppress(RoomMoved):
                        return await local(actor)
            elif owner is not None:
                remaining = max(0.1, deadline - loop.time())
                try:
                    ack = await self.bus.request(
                        owner,
                        remote(self.bus.new_id()),
                        min(self.settings.reply_timeout, remaining),
                    )
                except NodeUnreachable:
                    pass  # dead: its lease runs out soon, then the room is taken
                except TimeoutError:
                    return unavailable()  # it may have been applied: the client decides
                else:
                    if ack.get("ok") or ack["error"]["code"] != "not_owner":
                        return ack
            self._owners.pop(room_id, None)
            if loop.time() + delay > deadline:
                return unavailable()
            await asyncio.sleep(delay)  # waiting for a lease to run out or be taken
            delay = min(delay * 2, 1.0)

    async def _owner_of(self, room_id: str) -> str | None:
        """The node owning the room; takes it here if nobody does (NotFound: no such room)."""
        cached = self._owners.get(room_id)
        if cached is not None:
            return cached
        holder = await self.leases.holder(room_id)
        if holder is None:
            holder = await self._take_or_find(room_id)
        if holder is not None:
            self._owners[room_id] = holder
        return holder

    async def _take_or_find(self, room_id: str) -> str | None:
        snapshot = await self.store.snapshot(room_id)
        last = snapshot.owner if snapshot is not None and not snapshot.handed_over else None
        if last is not None and last != self.node_id:
            # Its lease may have run out only because Redis was away: it keeps the room then,
            # with what it acknowledged and has not written yet. Silence is no answer: right
            # after Redis comes back its bus may not listen yet, or a busy loop may answer
            # late. Only a node judged dead (by liveness.py's rule) loses its room unasked.
            ping = PingRequest(id=self.bus.new_id(), reply_to=self.node_id, room=room_id)
            try:
                reply = await self.bus.request(last, ping, self.settings.ping_timeout)
            except (NodeUnreachable, TimeoutError):
                if last not in await self.judge_dead([last]):
                    return None  # asked again (within the request's budget) until it answers
            else:
                if reply.get("owns"):
                    return last
        return await self._place(room_id)

    async def _place(self, room_id: str) -> str | None:
        """Have the least loaded node that will take the room own it (see placement.py).

        This node is the last resort when every other candidate refuses or cannot be
        reached: a room owned by a busy node beats a room owned by nobody.
        """
        with contextlib.suppress(Exception):  # Redis away: the heartbeat's view will do
            async with asyncio.timeout(self.settings.ping_timeout):
                self.placement.refresh(await self.store.live_nodes())
        candidates = self.placement.candidates()
        if self.node_id not in candidates:
            candidates.append(self.node_id)
        refusal: RoomError | None = None
        for candidate in candidates:
            if candidate == self.node_id:
                try:
                    taken = await self.directory.acquire(room_id) is not None
                except RoomCapReached as exc:
                    refusal, taken = exc, False
            else:
                take = TakeRequest(id=self.bus.new_id(), reply_to=self.node_id, room=room_id)
                try:
                    ack = await self.bus.request(candidate, take, self.settings.take_timeout)
                except (NodeUnreachable, TimeoutError):
                    ack = acks.error("unavailable", "")
                if not ack.get("ok") and ack["error"]["code"] == "room_not_found":
                    raise NotFound("room_not_found", ack["error"]["message"])
                taken = bool(ack.get("ok") and ack.get("owns"))
            if taken:
                self.placement.placed(candidate)
                logger.info("room %s placed on %s", room_id, candidate)
                return candidate
            holder = await self.leases.holder(room_id)
            if holder is not None:
                return holder  # another node placed it meanwhile
        if refusal is not None:
            raise refusal
        return None

    # --- upkeep (the node's heartbeat) --------------------------------------------------

    async def check_rooms(self) -> None:
        """Follow the owners of rooms this node holds sockets in; reconcile where needed."""
        rooms = sorted(set(self.local.rooms()) | self._pending_reconcile)
        holders = await self.leases.holders(rooms)
        for room_id, holder in holders.items():
            if holder is None or holder != self._owners.get(room_id):
                # The owner died, let go or changed: make sure someone owns it, and tell them.
                self._owners.pop(room_id, None)
                self._spawn(self.reconcile(room_id, f"owner now {holder or 'nobody'}"))
            elif room_id in self._pending_reconcile:
                self._spawn(self.reconcile(room_id, "a departure was not delivered"))

    async def reconcile_all(self) -> None:
        """After the bus came back: reconcile every room this node holds sockets in."""
        for room_id in set(self.local.rooms()) | self._pending_reconcile:
            self._heard.pop(room_id, None)
            self._spawn(self.reconcile(room_id, "the bus came back"))

    # --- messages from other nodes -------------------------------------------------------

    async def on_bus_message(self, channel: str, message: BusMessage) -> None:
        """Handle what the bus received for this node."""
        match message:
            case Envelope(request=request):
                if request.expires_at and time.time() > request.expires_at:
                    # Its sender stopped waiting (it was stuck while Redis was away).
                    ack = acks.error("expired", "the request came too late and was not applied")
                else:
                    ack = await self.directory.handle(request)
                self.bus.reply(request.reply_to, request.id, ack)
            case RoomBroadcast():
                await self._on_broadcast(message)
            case SessionEvent(session=session, event=event, payload=payload):
                await self.local.deliver_session(session, event, payload)
            case SessionClose(session=session, reason=reason):
                await self.local.close_session(session, reason)

    async def _on_broadcast(self, message: RoomBroadcast) -> None:
        if message.owner == self.node_id:
            return  # this node's own broadcast: its sockets got it directly
        room_id = message.room
        heard = self._heard.get(room_id)
        self._heard[room_id] = (message.owner, message.seq)
        await self.local.deliver_room(room_id, message.event, message.payload)
        if self._owners.get(room_id) != message.owner:
            self._owners[room_id] = message.owner
            if heard is not None:
                self._spawn(self.reconcile(room_id, "a new owner"))
        elif heard is not None and heard[0] == message.owner and message.seq > heard[1] + 1:
            self._spawn(
                self.reconcile(room_id, f"broadcasts {heard[1] + 1}..{message.seq - 1} missed")
            )

    def forget_room(self, room_id: str) -> None:
        """This node holds no more sockets in the room: stop tracking its broadcasts."""
        self._heard.pop(room_id, None)

    # --- tasks ---------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop background reconciliations."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
