"""RoomActor: applies every change to one room, one at a time.

One actor per room runs on the room's owner node. Each participant's commands
are applied in the order they arrived; between participants, commands wait
in lanes, one lane per identity, served round-robin: a participant flooding the room (inside
its rate limit) delays another participant's command by at most one of its
own, never by its whole backlog. The room's own upkeep (timers, SFU events,
takeover and hand-over steps) goes first.

Nothing here waits on Redis for a participant's command: the state is in
memory and written behind (`StateWriter`), so there are no optimistic retries
and no `busy` errors, whatever the contention.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from server.rooms import (
    acks,
    floor_control,
    media_control,
    membership,
    reconnection,
    recording_control,
    stage_control,
)
from server.rooms.commands import (
    CLIENT_COMMANDS,
    ClientCommand,
    Command,
    JoinRoom,
    LeaveRoom,
    NodesGone,
    ReconcileNode,
    RecordingChanged,
    ResyncSessions,
    RunInRoom,
)
from server.rooms.errors import Conflict, RoomError
from server.rooms.owned_room import (
    CheckMediaFlow,
    ExpireFloor,
    ExpireReconnect,
    ExpireStageInvite,
    MediaEventArrived,
    MediaRecovering,
    OwnedRoom,
    ResumeRecording,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Commands one identity may have waiting; more means its client ignores its rate limit.
MAX_LANE_LENGTH = 64


class RoomMoved(Exception):
    """The actor stopped (hand-over, deletion, lost lease): ask the room's owner again."""


@dataclass
class _Envelope:
    command: Command
    reply: asyncio.Future[Any] | None


class RoomActor:
    """The one place a room's state changes on its owner."""

    def __init__(self, room: OwnedRoom) -> None:
        self.room = room
        self._system: collections.deque[_Envelope] = collections.deque()
        self._lanes: dict[str, collections.deque[_Envelope]] = {}
        self._turns: collections.deque[str] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Per-identity locks of the commands that run outside the one-at-a-time order.
        self._media_locks: dict[str, asyncio.Lock] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()

    @property
    def room_id(self) -> str:
        """The room this actor owns."""
        return self.room.room_id

    @property
    def stopped(self) -> bool:
        """Whether the actor has stopped taking commands."""
        return self._stopped

    def start(self) -> None:
        """Start applying commands."""
        self._task = asyncio.create_task(self._run(), name=f"room {self.room_id}")

    # --- submitting ---------------------------------------------------------------------

    async def call(self, command: Command) -> acks.Ack:
        """Apply a command and return its ack; RoomMoved if the actor stopped."""
        return await self._submit(command)  # type: ignore[no-any-return]

    async def run(self, action: Callable[[OwnedRoom], Awaitable[T]], *, urgent: bool = True) -> T:
        """Run `action(room)` in the room's order and return its result."""
        return await self._submit(RunInRoom(action, urgent=urgent))  # type: ignore[no-any-return]

    def post(self, command: Command) -> None:
        """Queue a command without waiting for it (the room's own upkeep)."""
        if not self._stopped:
            self._enqueue(_Envelope(command, None))

    async def _submit(self, command: Command) -> Any:
        if self._stopped:
            raise RoomMoved(self.room_id)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Envelope(command, reply))
        return await reply

    def _enqueue(self, envelope: _Envelope) -> None:
        key = _lane_key(envelope.command)
        if key is None:
            self._system.append(envelope)
        else:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = collections.deque()
                self._turns.append(key)
            if len(lane) >= MAX_LANE_LENGTH and envelope.reply is not None:
                envelope.reply.set_result(acks.error("rate_limited", "too many events; slow down"))
                return
            lane.append(envelope)
        self._wakeup.set()

    def _next(self) -> _Envelope | None:
        if self._system:
            return self._system.popleft()
        if not self._turns:
            return None
        key = self._turns.popleft()
        lane = self._lanes[key]
        envelope = lane.popleft()
        if lane:
            self._turns.append(key)
        else:
            del self._lanes[key]
        return envelope

    # --- applying -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            envelope = self._next()
            if envelope is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._apply(envelope)

    async def _apply(self, envelope: _Envelope) -> None:
        reply = envelope.reply
        if reply is not None and reply.done():
            return  # the caller gave up waiting
        try:
            with self.room.writer.batch():
                result = await self._dispatch(envelope.command, reply)
        except Exception as exc:
            if isinstance(envelope.command, RunInRoom):
                # An action's caller gets its exception, refusals included.
                if reply is not None and not reply.done():
                    reply.set_exception(exc)
                elif not isinstance(exc, RoomError):
                    logger.exception("room %s: %s failed", self.room_id, envelope.command.name)
                return
            if isinstance(exc, RoomError):
                result = acks.refusal(exc)
            else:
                name = type(envelope.command).__name__
                logger.exception("room %s: %s failed", self.room_id, name)
                result = acks.error("internal_error", "the server could not handle this event")
        if result is _DEFERRED or reply is None or reply.done():
            return
        if isinstance(envelope.command, RunInRoom):
            reply.set_result(result)
            return
        # Group commit: the ack goes once what the command changed is written.
        settled = self.room.writer.settled()
        if settled.done():
            reply.set_result(result)
        else:
            settled.add_done_callback(lambda _: _resolve(reply, result))

    async def _dispatch(self, command: Command, reply: asyncio.Future[Any] | None) -> Any:
        room = self.room
        match command:
            case ClientCommand(caller=caller, event=event, payload=payload):
                spec = CLIENT_COMMANDS[event]
                actor = room.current(caller) if spec.joined else room.current_or_invitee(caller)
                if not room.limits.allow_event(caller.identity, event):
                    raise Conflict("rate_limited", "too many events; slow down")
                if spec.concurrent:
                    self._run_beside(actor.identity, spec.handle(room, actor, payload), reply)
                    return _DEFERRED
                return await spec.handle(room, actor, payload)
            case JoinRoom(caller=caller, incarnation=incarnation):
                return await membership.join(room, caller, incarnation)
            case LeaveRoom(identity=identity, session=session, reason=reason):
                return await membership.leave(room, identity, session, reason)
            case ReconcileNode(node=node, sessions=sessions, joining=joining):
                return await membership.reconcile(room, node, sessions, joining)
            case ResyncSessions(sessions=sessions):
                await membership.resync(room, sessions)
                return acks.ok()
            case NodesGone(nodes=nodes):
                await membership.nodes_gone(room, nodes)
            case RecordingChanged(update=update, failed=True):
                await recording_control.recording_failed(room, update)
            case RecordingChanged(update=update):
                await recording_control.recording_changed(room, update)
            case ExpireFloor(grant_id=grant_id):
                await floor_control.expire_floor(room, grant_id)
            case ExpireStageInvite(invite_id=invite_id):
                await stage_control.invite_expired(room, invite_id)
            case ExpireReconnect(identity=identity, session=session):
                await membership.expire_reconnect(room, identity, session)
            case CheckMediaFlow():
                await reconnection.check_media_flow(room)
            case MediaRecovering():
                await reconnection.media_recovering(room, command)
            case MediaEventArrived(event=event):
                await media_control.media_event(room, event)
            case ResumeRecording(attempt=attempt, dead_writer=dead_writer):
                await recording_control.resume_after_takeover(room, dead_writer, attempt)
            case RunInRoom(action=action):
                return await action(room)
        return None

    def _run_beside(
        self, identity: str, work: Awaitable[acks.Ack], reply: asyncio.Future[Any] | None
    ) -> None:
        lock = self._media_locks.setdefault(identity, asyncio.Lock())

        async def run() -> None:
            try:
                async with lock:
                    result = await work
            except RoomError as exc:
                result = acks.refusal(exc)
            except Exception:
                logger.exception("room %s: media command of %s failed", self.room_id, identity)
                result = acks.error("internal_error", "the server could not handle this event")
            if reply is not None and not reply.done():
                reply.set_result(result)

        task = asyncio.create_task(run())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # --- stopping -------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop taking commands; those still waiting are told the room moved (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        current = asyncio.current_task()
        if self._task is not None and self._task is not current:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = list(self._system)
        for lane in self._lanes.values():
            waiting.extend(lane)
        self._system.clear()
        self._lanes.clear()
        self._turns.clear()
        for envelope in waiting:
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(RoomMoved(self.room_id))
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        self.room.cancel_timers()


_DEFERRED = object()


def _resolve(reply: asyncio.Future[Any], result: Any) -> None:
    if not reply.done():
        reply.set_result(result)


def _lane_key(command: Command) -> str | None:
    """Participants' commands wait in their identity's lane; the room's own go first."""
    match command:
        case ClientCommand(caller=caller) | JoinRoom(caller=caller):
            return caller.identity
        case LeaveRoom(identity=identity):
            # The same lane as the join: a leave sent after a join is applied after it.
            return identity
        case RunInRoom(urgent=False):
            return "\0admin"
    return None
