"""What a node does when it becomes a room's owner, and when it stops being one.

Taking over (from a snapshot) brings the participants' media up on this node,
tells them to rebuild their connections here, times a floor granted before,
and resumes a recording in progress. Handing over closes this node's part of
the recording and its media; the successor does the rest.
"""

from __future__ import annotations

import logging

from server.rooms import reconnection, recording_control
from server.rooms.owned_room import OwnedRoom
from server.rooms.server_events import MediaMoved

logger = logging.getLogger(__name__)


async def take_over(room: OwnedRoom, previous_owner: str | None, handed_over: bool) -> None:
    """Start owning a room loaded from its snapshot (run in the room's actor)."""
    room.touch()  # the snapshot names this node from now on
    live = room.live
    # The floor as it was, before anyone's media: it decides who may publish (a guest only
    # while holding it) and whose video is pinned.
    room.media.set_floor(
        live.floor.identity if live.floor else None,
        live.pinned,
        live.screen.identity if live.screen else None,
    )
    for participant in list(room.participants.values()):
        try:
            await room.media.add(
                participant.identity, participant.role, participant.session, participant.venue
            )
        except Exception:
            logger.exception("room %s: media of %s not set up", room.room_id, participant.identity)
    room.restart_timers()
    room.restart_reconnect_timers()
    reconnection.watch_media_flow(room)
    for participant in list(room.participants.values()):
        if participant.reconnecting == "media":
            # Its media is set up anew here: what it was rebuilding is gone.
            await reconnection.clear(room, participant)
    if room.participants and previous_owner is not None:
        notice = MediaMoved(owner=room.node, reason="handover" if handed_over else "failover")
        await room.broadcast("media_moved", notice)
    # A previous owner that handed over released the recording; one that died did not.
    dead_writer = None if handed_over else previous_owner
    await recording_control.resume_after_takeover(room, dead_writer)
    logger.info(
        "room %s taken over from %s (%d participants)",
        room.room_id,
        previous_owner or "nobody",
        len(room.participants),
    )


async def hand_over(room: OwnedRoom) -> None:
    """Stop owning the room here: recording suspended, media closed (run in its actor)."""
    await recording_control.suspend_for_handover(room)
    room.cancel_timers()
    room.handed_over = True
    room.touch()
    await room.media.close()
