"""Stage commands (连线): invite an observer on stage, accept or decline, end the connection.

The rules are in `server.rooms.stage`; these handlers check who may act, apply
them through `OwnedRoom.change_live`, raise or return the participant's role in the
room (never its token), and write the timeline: `stage_invited`,
`stage_declined`, `stage_invite_expired`, `stage_invite_withdrawn`,
`stage_started` (with a `floor_granted`, so the speaking record counts the guest)
and `stage_ended` (with its reason: `ended`, `left`, `session_ended`). A seat held for a
broadcast viewer's call-in (`server.rooms.call_ins`) settles that request as it goes.
"""

from __future__ import annotations

import uuid

from server.rooms import acks, call_in_queue, payloads, stage
from server.rooms.errors import Conflict, Forbidden
from server.rooms.lobby import who
from server.rooms.models import LiveState, Participant, Role, StageSeat
from server.rooms.owned_room import ExpireStageInvite, OwnedRoom, now_ms, require_moderator
from server.rooms.server_events import LeaveReason


async def invite(room: OwnedRoom, actor: Participant, req: payloads.StageInvite) -> acks.Ack:
    """Host or co-host: invite a present observer on stage (one seat per room)."""
    require_moderator(actor)
    room.require_open()
    target = room.present(req.identity)
    if target.role is not Role.OBSERVER:
        raise Conflict("not_an_observer", "only an observer can be invited on stage")
    invite_id = uuid.uuid4().hex[:16]
    state, _ = await room.change_live(
        lambda s: stage.invite(
            s, target.identity, actor.identity, now_ms(), invite_id, req.time_limit_seconds
        )
    )
    # A little later than the deadline, so the timer never beats a last-moment answer.
    room.post_later(stage.INVITE_SECONDS + 1.0, ExpireStageInvite(invite_id))
    await room.timeline("stage_invited", {**who(target), "by": actor.identity})
    return acks.ok(live=state)


async def accept(room: OwnedRoom, actor: Participant, _: payloads.StageAccept) -> acks.Ack:
    """The invited observer goes on stage: guest for the duration, with the floor."""
    grant_id = uuid.uuid4().hex[:16]
    now = now_ms()
    stage.accept(room.live, actor.identity, now, grant_id)  # refuses before anything changes
    seat = room.live.stage
    assert seat is not None
    guest = await _set_role(room, actor, Role.GUEST)
    state, _changed = await room.change_live(
        lambda s: stage.accept(s, actor.identity, now, grant_id)
    )
    await call_in_queue.seat_changed(room, seat, "on_stage")
    await room.timeline("stage_started", {**who(guest), "by": seat.by})
    await room.timeline(
        "floor_granted",
        {**who(guest), "by": seat.by, "time_limit_seconds": seat.time_limit_seconds},
    )
    return acks.ok(live=state, participant=guest)


async def decline(room: OwnedRoom, actor: Participant, _: payloads.StageDecline) -> acks.Ack:
    """The invited observer declines; the seat is free again."""
    seat = room.live.stage
    state, _changed = await room.change_live(lambda s: stage.decline(s, actor.identity, now_ms()))
    if seat is not None:
        await call_in_queue.seat_changed(room, seat, "declined")
    await room.timeline("stage_declined", who(actor))
    return acks.ok(live=state)


async def end(room: OwnedRoom, actor: Participant, _: payloads.StageEnd) -> acks.Ack:
    """End the connection (a host, a co-host, or the guest), or withdraw the invitation."""
    seat = room.live.stage
    if seat is None:
        raise Conflict("not_on_stage", "nobody is on stage or invited")
    if seat.identity != actor.identity and not actor.role.moderates:
        raise Forbidden("host_only", "only a host, a co-host or the guest can end the connection")
    state = await finish(room, seat, by=actor.identity, reason="ended")
    return acks.ok(live=state)


async def invite_expired(room: OwnedRoom, invite_id: str) -> None:
    """Nobody answered the invitation in time: the seat is free again."""
    seat = room.live.stage
    _, changed = await room.change_live(lambda s: stage.expire(s, invite_id, now_ms()))
    if changed and seat is not None:
        await call_in_queue.seat_changed(room, seat, "expired")
        await room.timeline("stage_invite_expired", {"identity": seat.identity})


async def participant_gone(room: OwnedRoom, gone: Participant, reason: LeaveReason) -> None:
    """Whoever leaves the session leaves the stage too (or their invitation lapses)."""
    seat = room.live.stage
    if seat is not None and seat.identity == gone.identity:
        await finish(room, seat, by=gone.identity, reason=reason, gone=gone)


async def session_ending(room: OwnedRoom, by: str | None) -> None:
    """The session ends: so does the connection (the minutes show when)."""
    seat = room.live.stage
    if seat is not None:
        await finish(room, seat, by=by, reason="session_ended")


async def finish(
    room: OwnedRoom,
    seat: StageSeat,
    *,
    by: str | None,
    reason: str,
    gone: Participant | None = None,
) -> LiveState:
    """Free the seat; a guest gives the floor back, its tracks end for everyone, and it is
    an observer again (`gone`: the participant has already left)."""
    floor_before = room.live.floor
    state, _ = await room.change_live(stage.end)
    if floor_before is not None and state.floor is None and floor_before.identity == seat.identity:
        # The speaking record ends the guest's turn here, as for any revoked floor.
        await room.timeline("floor_revoked", {"identity": seat.identity, "by": by})
    participant = room.participants.get(seat.identity, gone)
    await call_in_queue.seat_freed(room, seat)
    if seat.status == "invited":
        await room.timeline(
            "stage_invite_withdrawn", {"identity": seat.identity, "by": by, "reason": reason}
        )
        return state
    if participant is not None and participant.role is Role.GUEST:
        participant = await _set_role(room, participant, Role.OBSERVER)
    named = who(participant) if participant is not None else {"identity": seat.identity}
    await room.timeline(
        "stage_ended",
        {**named, "by": by, "reason": reason, "seconds": round((now_ms() - seat.since) / 1000)},
    )
    return state


async def _set_role(room: OwnedRoom, participant: Participant, role: Role) -> Participant:
    """Change a participant's role in the room (its token is unchanged) and tell everyone."""
    updated = participant.model_copy(update={"role": role})
    room.participants[participant.identity] = updated
    room.touch()
    await room.media.set_role(participant.identity, role)
    await room.broadcast("participant_updated", updated)
    return updated
