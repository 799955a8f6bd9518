"""Who is in the session: joining, leaving, replacing a connection, and reconciling with edges.

A participant is (identity, session, node): the socket that joined, on the
node that holds it. Only that node reports the socket gone (`leave`); the owner
forgets participants of other nodes only when their node is dead (`nodes_gone`)
or when their node, reconciling, no longer lists them.
"""

from __future__ import annotations

import logging
import time

from server.rooms import (
    acks,
    floor,
    lobby,
    reconnection,
    recording_control,
    stage,
    stage_control,
)
from server.rooms.admission import check_admission, check_not_excluded, check_token_room, must_wait
from server.rooms.errors import Conflict, RoomError
from server.rooms.models import Caller, Invitee, Participant
from server.rooms.owned_room import OwnedRoom
from server.rooms.ports import SessionRef
from server.rooms.server_events import (
    DepartureReason,
    LeaveReason,
    ParticipantLeft,
    Removed,
    Replaced,
    Resync,
)

logger = logging.getLogger(__name__)


def who(participant: Invitee) -> dict[str, object]:
    """How the timeline names a participant."""
    return lobby.who(participant)


def _admit(room: OwnedRoom, caller: Caller) -> None:
    state = room.state
    check_admission(
        state.live,
        caller,
        banned=state.banned,
        admitted=state.admitted,
        participants=state.participants,
        max_participants=room.settings.max_participants,
    )


async def join(room: OwnedRoom, caller: Caller, incarnation: str) -> acks.Ack:
    """Admit the caller; a second connection of the same identity replaces the first."""
    check_token_room(room.room, incarnation, caller)
    if not room.limits.allow_join(caller.identity):
        raise Conflict("rate_limited", "joining too often; wait a moment")
    state = room.state
    check_not_excluded(state.live, caller, state.banned)
    if caller.identity not in state.participants and must_wait(
        room.room, state.live, caller, admitted=state.admitted
    ):
        return await lobby.wait(room, caller)
    _admit(room, caller)
    # Let in (admitted, or the lobby was switched off): no longer waiting.
    if state.lobby.pop(caller.identity, None) is not None:
        room.touch()
        await lobby.tell_moderators(room)
    previous = room.participants.get(caller.identity)
    participant = _participant(room, caller)
    if previous is not None and previous.reconnecting == "connection_lost":
        # Back within the grace period: the same participant on a new connection.
        participant = participant.model_copy(update={"joined_at": previous.joined_at})
        await _add(room, participant, rejoined=True)
    else:
        if previous is not None and previous.session != caller.session:
            await room.send(previous, "replaced", Replaced(reason="joined elsewhere"))
            await room.close_connection(previous, "replaced")
        await _add(room, participant)
    # Also for one back within the grace period: attendance counts a `joined` of someone
    # present as a reconnection, their presence unbroken.
    await room.timeline("joined", who(participant))
    return acks.ok(snapshot=room.snapshot(participant))


async def keep_roster(room: OwnedRoom, roster: list[Invitee]) -> None:
    """Who was invited, as read for a join: later snapshots show it (the room does not
    read the roster itself; each join brings the one read meanwhile)."""
    room.roster = roster


def _participant(room: OwnedRoom, caller: Caller) -> Participant:
    """The caller as a participant, under the name a host gave them if one did (and, back
    while on stage, as a guest)."""
    return Participant(
        **caller.model_dump(exclude={"session", "node", "name", "role"}),
        role=stage.role_on_stage(room.live, caller.identity, caller.role),
        name=room.state.renamed.get(caller.identity, caller.name),
        session=caller.session,
        node=caller.node,
        joined_at=time.time(),
    )


async def _add(room: OwnedRoom, participant: Participant, *, rejoined: bool = False) -> None:
    """Put a participant in the session (its media set up), and tell everyone: that it
    joined, or (`rejoined`, its dropped connection held) that it is back."""
    state = room.state
    # Re-inserted, so the dict keeps joining order (a new connection counts as joining
    # anew); one that came back within the grace period keeps its place.
    if not rejoined:
        state.participants.pop(participant.identity, None)
    state.participants[participant.identity] = participant
    state.admitted.add(participant.identity)
    room.touch()
    try:
        await room.media.add(
            participant.identity, participant.role, participant.session, participant.venue
        )
    except BaseException:
        # Leave no ghost behind: this connection never joined.
        state.participants.pop(participant.identity, None)
        raise
    _, went_live = await room.change_live(floor.go_live)
    if went_live and room.room.auto_record:
        await recording_control.auto_record(room)
    elif room.state.recording_id is not None:
        # The room moved here empty while recording: resume once someone is back.
        await recording_control.resume_after_takeover(room)
    room.media_waits_for_publish.pop(participant.identity, None)
    reconnection.watch_media_flow(room)
    event = "participant_reconnected" if rejoined else "participant_joined"
    await room.broadcast(event, participant)


async def forget(room: OwnedRoom, gone: Participant, reason: LeaveReason) -> None:
    """Remove every trace of a participant who left, was removed or whose node died."""
    current = room.participants.get(gone.identity)
    if current is None or current.session != gone.session:
        return
    del room.participants[gone.identity]
    room.media_waits_for_publish.pop(gone.identity, None)
    room.touch()
    await room.media.remove(gone.identity, gone.session)
    await room.change_live(lambda s: floor.forget(s, gone.identity))
    await stage_control.participant_gone(room, gone, reason)
    await room.broadcast("participant_left", ParticipantLeft(identity=gone.identity, reason=reason))
    await room.timeline("left", {**who(gone), "reason": reason})


async def leave(room: OwnedRoom, identity: str, session: str, reason: DepartureReason) -> acks.Ack:
    """A connection left or closed (or stopped waiting in the lobby); forget the participant
    unless a newer one replaced it. A connection that dropped (not left on purpose) is
    held for the reconnect grace period instead."""
    participant = room.participants.get(identity)
    if participant is not None and participant.session == session:
        if reason == "join_abandoned":
            await forget(room, participant, "connection_lost")
        elif reason == "connection_lost" and reconnection.holds_drops(room):
            await reconnection.hold(room, participant)
        else:
            await forget(room, participant, reason)
    else:
        await lobby.forget(room, identity, session)
    return acks.ok()


async def expire_reconnect(room: OwnedRoom, identity: str, session: str) -> None:
    """The grace of a dropped connection is over: if it did not come back, it left."""
    participant = room.participants.get(identity)
    if (
        participant is not None
        and participant.session == session
        and participant.reconnecting == "connection_lost"
    ):
        await forget(room, participant, "connection_lost")


async def nodes_gone(room: OwnedRoom, nodes: frozenset[str]) -> None:
    """Forget the participants whose node died (their sockets died with it)."""
    for participant in list(room.participants.values()):
        if participant.node in nodes:
            await forget(room, participant, "connection_lost")
    await lobby.forget_nodes(room, set(nodes))


async def reconcile(
    room: OwnedRoom, node: str, sessions: list[Caller], joining: frozenset[str] = frozenset()
) -> acks.Ack:
    """Make the room agree with what `node` holds, then resend each of its sockets the state.

    An edge sends this when it cannot be sure the owner heard everything: after
    its bus connection came back, after the room changed owner, or after a leave
    could not be delivered. Participants of that node it no longer holds (and is
    not joining) are forgotten; sockets it holds that the owner does not know (a
    successor's snapshot was a moment old) are admitted again — their media is
    new, so they are told to rebuild it — or closed if they may not be.
    """
    listed = {caller.session for caller in sessions} | joining
    for participant in list(room.participants.values()):
        if participant.reconnecting == "connection_lost":
            continue  # its socket is gone already; the grace period decides
        if participant.node == node and participant.session not in listed:
            await forget(room, participant, "connection_lost")
    # `joining` also names the node's sockets waiting in the lobby.
    await lobby.forget_nodes(room, {node}, keep=set(listed))
    readmitted: set[str] = set()
    for caller in sessions:
        known = room.participants.get(caller.identity)
        if known is not None and known.session == caller.session:
            continue
        target = SessionRef(caller.node, caller.session)
        if known is not None:
            # A newer connection holds this identity: this one is stale.
            await room.send(target, "replaced", Replaced(reason="joined elsewhere"))
            await room.close_connection(target, "replaced")
            continue
        try:
            _admit(room, caller)
        except RoomError as exc:
            await room.send(target, "removed", Removed(reason=exc.message, by="server"))
            await room.close_connection(target, exc.code)
            continue
        await _add(room, _participant(room, caller))
        readmitted.add(caller.session)
    await resync(room, [SessionRef(c.node, c.session) for c in sessions], readmitted)
    return acks.ok()


async def resync(
    room: OwnedRoom, sessions: list[SessionRef], media_reset: set[str] | None = None
) -> None:
    """Send each of these connections, if still current, the whole session afresh
    (and, to those in `media_reset`, that their media must be set up again)."""
    by_session = {p.session: p for p in room.participants.values()}
    for target in sessions:
        participant = by_session.get(target.session)
        if participant is not None and participant.node == target.node:
            reset = media_reset is not None and target.session in media_reset
            notice = Resync(snapshot=room.snapshot(participant), media_reset=reset)
            await room.send(target, "resync", notice)
