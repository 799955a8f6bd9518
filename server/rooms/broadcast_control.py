"""Pausing and resuming the live broadcast (host and co-hosts).

A pause is part of the live state (`live.broadcast_paused`): it survives a
move of the room to another node, and the broadcast shows a slate with
silence until it is resumed (viewers' players keep playing; nothing of the
session reaches them meanwhile).
"""

from __future__ import annotations

from server.rooms import acks, payloads
from server.rooms.errors import Conflict
from server.rooms.membership import who
from server.rooms.models import Participant
from server.rooms.owned_room import OwnedRoom, require_moderator


async def pause(room: OwnedRoom, actor: Participant, _: payloads.BroadcastPause) -> acks.Ack:
    """Show the slate instead of the session."""
    return await _set_paused(room, actor, True)


async def resume(room: OwnedRoom, actor: Participant, _: payloads.BroadcastResume) -> acks.Ack:
    """Show the session again."""
    return await _set_paused(room, actor, False)


async def _set_paused(room: OwnedRoom, actor: Participant, paused: bool) -> acks.Ack:
    require_moderator(actor)
    room.require_open()
    if room.room.broadcast == "off":
        raise Conflict("broadcast_off", "this session is not broadcast")
    state, changed = await room.change_live(
        lambda s: s.model_copy(update={"broadcast_paused": paused})
    )
    if changed:
        await room.timeline("broadcast_paused" if paused else "broadcast_resumed", who(actor))
    return acks.ok(live=state)
