"""Screen sharing: the host, or the floor holder during their turn, shows a screen or a
window in everyone's spotlight.

The client adds the screen as one more video track of its publish connection
(renegotiating it), then sends `start_screen_share`: the newest video track it
published is the screen (`live.screen.track`; subscribers find it by the track id
in their offer's `tracks`). It is forwarded like any video and recorded like any
track. A member's share ends with their turn; the sharer, a host or a co-host
stops it.
"""

from __future__ import annotations

from server.rooms import acks, floor, payloads
from server.rooms.errors import Conflict, Forbidden
from server.rooms.membership import who
from server.rooms.models import Participant, Role, ScreenShare
from server.rooms.owned_room import OwnedRoom, now_ms


async def start(room: OwnedRoom, actor: Participant, _: payloads.StartScreenShare) -> acks.Ack:
    """Show the caller's newest video track in everyone's spotlight."""
    if actor.role is Role.OBSERVER:
        raise Forbidden("publish_forbidden", "observers receive only")
    grant = room.live.floor
    if actor.role is not Role.HOST and (grant is None or grant.identity != actor.identity):
        raise Conflict("not_floor_holder", "only the host or the floor holder may share a screen")
    track = room.media.newest_video_track(actor.identity)
    if track is None:
        raise Conflict("no_screen_track", "publish the screen as a video track first")
    share = ScreenShare(
        identity=actor.identity,
        track=track,
        by_host=actor.role is Role.HOST,
        started_at=now_ms(),
    )
    state, changed = await room.change_live(lambda s: floor.share_screen(s, share))
    if changed:
        await room.timeline("screen_share_started", {**who(actor), "track": track})
    return acks.ok(live=state)


async def stop(room: OwnedRoom, actor: Participant, _: payloads.StopScreenShare) -> acks.Ack:
    """Stop the shared screen (the one sharing, or a host or co-host)."""
    screen = room.live.screen
    if screen is None:
        raise Conflict("not_sharing", "nobody is sharing a screen")
    if screen.identity != actor.identity and not actor.role.moderates:
        raise Forbidden("host_only", "only a host or the one sharing can stop it")
    # The timeline's `screen_share_stopped` is written by every change that ends a share.
    state, _changed = await room.change_live(floor.stop_screen)
    return acks.ok(live=state)
