"""Session commands besides the floor: chat, mute state and requests, removal, ending.

Removing someone bans the identity for the rest of the session and closes its
connection on whichever node holds it; ending closes everyone's. Both act on
the owner's one list of participants, so a reconnect cannot slip between the
ban and the close: the owner handles the reconnect's join after this command.
"""

from __future__ import annotations

from server.rooms import acks, floor, lobby, payloads, recording_control, stage_control
from server.rooms.errors import Conflict, Forbidden, InvalidRequest
from server.rooms.membership import forget, who
from server.rooms.models import Participant, Role
from server.rooms.owned_room import OwnedRoom, require_host, require_moderator
from server.rooms.server_events import MuteRequested, Removed, SessionEnded


async def chat(room: OwnedRoom, actor: Participant, req: payloads.Chat) -> acks.Ack:
    """Post a chat message (kept in the timeline)."""
    if not actor.role.can_chat:
        raise Forbidden("forbidden", "observers cannot write in the chat")
    room.require_open()
    entry = await room.timeline("chat", {**who(actor), "text": req.text})
    return acks.ok(entry=entry)


async def media_state(room: OwnedRoom, actor: Participant, req: payloads.MediaState) -> acks.Ack:
    """Record that the participant muted or unmuted their microphone or camera."""
    updated = actor.model_copy(
        update={"audio_muted": req.audio_muted, "video_muted": req.video_muted}
    )
    if updated != actor:
        room.participants[actor.identity] = updated
        room.touch()
        await room.broadcast("participant_updated", updated)
    return acks.ok(participant=updated)


async def request_mute(room: OwnedRoom, actor: Participant, req: payloads.RequestMute) -> acks.Ack:
    """Ask a participant to mute their microphone or camera."""
    require_moderator(actor)
    target = room.present(req.identity)
    await room.send(target, "mute_requested", MuteRequested(kind=req.kind, by=actor.identity))
    await room.timeline("mute_requested", {**who(target), "kind": req.kind, "by": actor.identity})
    return acks.ok()


async def remove_participant(
    room: OwnedRoom, actor: Participant, req: payloads.RemoveParticipant
) -> acks.Ack:
    """Remove a participant for the rest of the session (a co-host cannot remove a host)."""
    require_moderator(actor)
    if req.identity == actor.identity:
        raise InvalidRequest("cannot_remove_self", "the host cannot remove themselves")
    target = room.present(req.identity)
    if target.role is Role.HOST and actor.role is not Role.HOST:
        raise Forbidden("cannot_remove_host", "a co-host cannot remove the host")
    room.state.banned.add(target.identity)
    room.touch()
    await room.send(target, "removed", Removed(reason=req.reason, by=actor.identity))
    await forget(room, target, "removed")
    await room.close_connection(target, "removed")
    return acks.ok()


async def mute_all(room: OwnedRoom, actor: Participant, _: payloads.MuteAll) -> acks.Ack:
    """Ask everyone who publishes to mute their microphone, except the floor holder (and
    the one asking)."""
    require_moderator(actor)
    room.require_open()
    floor_holder = room.live.floor.identity if room.live.floor else None
    muted = [
        p
        for p in room.participants.values()
        if p.role is not Role.OBSERVER and p.identity not in (floor_holder, actor.identity)
    ]
    notice = MuteRequested(kind="audio", by=actor.identity)
    for participant in muted:
        await room.send(participant, "mute_requested", notice)
    await room.timeline(
        "muted_all", {"by": actor.identity, "count": len(muted), "except": floor_holder}
    )
    return acks.ok(muted=[p.identity for p in muted])


async def rename_participant(
    room: OwnedRoom, actor: Participant, req: payloads.RenameParticipant
) -> acks.Ack:
    """Change how a participant's name is shown, for everyone and for the rest of the
    session (a rejoin keeps it; the timeline keeps the change for the archive)."""
    require_moderator(actor)
    room.require_open()
    target = room.present(req.identity)
    if target.name == req.name:
        return acks.ok(participant=target)
    updated = target.model_copy(update={"name": req.name})
    room.participants[target.identity] = updated
    room.state.renamed[target.identity] = req.name
    room.touch()
    await room.broadcast("participant_updated", updated)
    await room.timeline(
        "renamed",
        {**who(updated), "previous": target.name, "by": actor.identity},
    )
    return acks.ok(participant=updated)


async def end_session(room: OwnedRoom, actor: Participant, _: payloads.EndSession) -> acks.Ack:
    """End the session for everyone: they are told, then disconnected."""
    require_host(actor)
    await close_session(room, SessionEnded(reason="ended", by=actor.identity), keep=actor)
    return acks.ok()


async def close_session(
    room: OwnedRoom, notice: SessionEnded, keep: Participant | None = None
) -> None:
    """End the session (host's end, or deletion): stop recording, tell and close everyone.

    `keep`'s connection stays open so its ack reaches it; its client closes on
    `session_ended` like everyone else's.
    """
    if room.live.status == "ended" and notice.reason == "ended":
        raise Conflict("session_ended", "the session has ended")
    await stage_control.session_ending(room, notice.by)
    await room.change_live(lambda s: floor.end(s) if s.status != "ended" else s)
    await recording_control.stop_if_recording(room)
    await lobby.close(room)
    await room.timeline("session_ended", {"by": notice.by, "reason": notice.reason})
    await room.broadcast("session_ended", notice)
    present = list(room.participants.values())
    room.participants.clear()
    room.touch()
    await room.media.close()
    for participant in present:
        if keep is None or participant.session != keep.session:
            await room.close_connection(participant, "session_ended")
