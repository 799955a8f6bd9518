"""Floor control commands: hands, the speaking queue, grants and their timers, agenda, lock.

The speaking queue (grants, order, extensions) is run by hosts, co-hosts and moderators;
the agenda, the lock and pins by hosts and co-hosts.

Each handler checks who may do it, applies a pure rule of `floor` through
`OwnedRoom.change_live`, and writes the timeline. The owner runs them one at a
time, so no rule ever sees a state another command is halfway through.
"""

from __future__ import annotations

import uuid

from server.rooms import acks, floor, payloads
from server.rooms.errors import Conflict, Forbidden
from server.rooms.membership import who
from server.rooms.models import Participant, Role
from server.rooms.owned_room import OwnedRoom, now_ms, require_moderator, require_queue_runner


async def raise_hand(room: OwnedRoom, actor: Participant, _: payloads.RaiseHand) -> acks.Ack:
    """Ask for the floor."""
    if not actor.role.can_request_floor:
        raise Forbidden("forbidden", f"a {actor.role.value} cannot ask for the floor")
    state, changed = await room.change_live(lambda s: floor.raise_hand(s, actor.identity))
    if changed:
        await room.timeline("hand_raised", who(actor))
    return acks.ok(live=state)


async def lower_hand(room: OwnedRoom, actor: Participant, req: payloads.LowerHand) -> acks.Ack:
    """Withdraw one's own request; the host may withdraw anyone's (skip)."""
    target = req.identity or actor.identity
    if target != actor.identity and not actor.role.runs_queues:
        raise Forbidden("host_only", "only those who run the queue can lower someone else's hand")
    state, changed = await room.change_live(lambda s: floor.lower_hand(s, target))
    if changed:
        await room.timeline("hand_lowered", {"identity": target, "by": actor.identity})
    return acks.ok(live=state)


async def grant_floor(room: OwnedRoom, actor: Participant, req: payloads.GrantFloor) -> acks.Ack:
    """Give the floor to a present participant who may publish."""
    require_queue_runner(actor)
    target = room.present(req.identity)
    if target.role is Role.OBSERVER:
        raise Conflict("cannot_speak", "an observer cannot be given the floor")
    return await _grant(room, actor, target, req.time_limit_seconds)


async def next_speaker(room: OwnedRoom, actor: Participant, req: payloads.NextSpeaker) -> acks.Ack:
    """Give the floor to the first present participant in the queue."""
    require_queue_runner(actor)
    # An observer's raised hand asks to be connected: it is answered with `stage_invite`.
    speakers = {i for i, p in room.participants.items() if p.role is not Role.OBSERVER}
    identity = floor.next_in_queue(room.live, speakers)
    return await _grant(room, actor, room.participants[identity], req.time_limit_seconds)


async def _grant(
    room: OwnedRoom, actor: Participant, target: Participant, time_limit_seconds: int | None
) -> acks.Ack:
    grant_id = uuid.uuid4().hex[:16]
    state, _ = await room.change_live(
        lambda s: floor.grant(s, target.identity, now_ms(), time_limit_seconds, grant_id)
    )
    await room.timeline(
        "floor_granted",
        {**who(target), "by": actor.identity, "time_limit_seconds": time_limit_seconds},
    )
    return acks.ok(live=state)


async def revoke_floor(room: OwnedRoom, actor: Participant, _: payloads.RevokeFloor) -> acks.Ack:
    """Take the floor back (the host), or give it back (its holder)."""
    grant = room.live.floor
    holder = grant.identity if grant else None
    if not actor.role.runs_queues and holder != actor.identity:
        raise Forbidden("host_only", "only a host or the speaker can end the speaker's turn")
    if grant is None:
        raise Conflict("no_floor", "nobody has the floor")
    state, changed = await room.change_live(lambda s: floor.expire(s, grant.grant_id))
    if changed:
        await room.timeline("floor_revoked", {"identity": grant.identity, "by": actor.identity})
    return acks.ok(live=state)


async def expire_floor(room: OwnedRoom, grant_id: str) -> None:
    """A timed floor's deadline came: return the floor, unless it changed hands since."""
    room.floor_timer_fired(grant_id)
    grant = room.live.floor
    if grant is None or grant.grant_id != grant_id or grant.deadline is None:
        return
    if grant.deadline > now_ms():
        # The timer fired early (the loop clock and the wall clock drifted): wait again.
        room.restart_timers()
        return
    _, changed = await room.change_live(lambda s: floor.expire(s, grant_id))
    if changed:
        await room.timeline("floor_expired", {"identity": grant.identity})


async def advance_agenda(
    room: OwnedRoom, actor: Participant, req: payloads.AdvanceAgenda
) -> acks.Ack:
    """Move to the next agenda item, or to a given one."""
    require_moderator(actor)
    agenda = room.room.agenda
    state, changed = await room.change_live(
        lambda s: floor.set_agenda_index(s, req.index, len(agenda))
    )
    if changed:
        item = agenda[state.agenda_index]
        await room.timeline("agenda_advanced", {"index": state.agenda_index, "title": item.title})
    return acks.ok(live=state)


async def set_lock(room: OwnedRoom, actor: Participant, req: payloads.SetLock) -> acks.Ack:
    """Lock the session against newcomers (those admitted before may still rejoin)."""
    require_moderator(actor)
    state, changed = await room.change_live(lambda s: floor.set_locked(s, req.locked))
    if changed:
        await room.timeline("locked" if req.locked else "unlocked", {"by": actor.identity})
    return acks.ok(live=state)


async def move_in_queue(room: OwnedRoom, actor: Participant, req: payloads.MoveInQueue) -> acks.Ack:
    """Move a raised hand up or down the queue (kept in the live state, so a reload keeps it)."""
    require_queue_runner(actor)
    state, changed = await room.change_live(
        lambda s: floor.move_in_queue(s, req.identity, req.position)
    )
    if changed:
        await room.timeline(
            "queue_reordered",
            {
                "identity": req.identity,
                "position": state.queue.index(req.identity),
                "by": actor.identity,
            },
        )
    return acks.ok(live=state)


async def extend_floor(room: OwnedRoom, actor: Participant, req: payloads.ExtendFloor) -> acks.Ack:
    """Give the speaker more time; the floor timer follows the new deadline."""
    require_queue_runner(actor)
    state, _ = await room.change_live(lambda s: floor.extend(s, req.seconds))
    grant = state.floor
    assert grant is not None  # floor.extend refuses an empty floor
    await room.timeline(
        "floor_extended",
        {
            "identity": grant.identity,
            "seconds": req.seconds,
            "deadline": grant.deadline,
            "by": actor.identity,
        },
    )
    return acks.ok(live=state)


async def pin(room: OwnedRoom, actor: Participant, req: payloads.Pin) -> acks.Ack:
    """Put a participant's venue in everyone's spotlight, or give the stage back (null)."""
    require_moderator(actor)
    target = room.present(req.identity) if req.identity is not None else None
    if target is not None and target.role is Role.OBSERVER:
        raise Conflict("cannot_speak", "an observer publishes nothing to show")
    state, changed = await room.change_live(
        lambda s: floor.pin(s, target.identity if target else None)
    )
    if changed:
        if target is not None:
            await room.timeline("pinned", {**who(target), "by": actor.identity})
        else:
            await room.timeline("unpinned", {"by": actor.identity})
    return acks.ok(live=state)


async def pin_by_control(room: OwnedRoom, identity: str | None) -> acks.Ack:
    """The control room moves the spotlight (as a host's `pin` does); None unpins."""
    target = room.present(identity) if identity is not None else None
    if target is not None and target.role is Role.OBSERVER:
        raise Conflict("cannot_speak", "an observer publishes nothing to show")
    state, changed = await room.change_live(
        lambda s: floor.pin(s, target.identity if target else None)
    )
    if changed:
        if target is not None:
            await room.timeline("pinned", {**who(target), "by": "control"})
        else:
            await room.timeline("unpinned", {"by": "control"})
    return acks.ok(live=state)
