"""Recording commands: the host's start and stop, automatic recording, and recording across owners.

The recording runs on the room's owner (it taps the owner's media). When the
owner changes — it died, or it drained — the successor resumes the same
recording in a new part (the manifest records the gap) and tells the hosts; a
recording that cannot be resumed is restarted if the session records
automatically, and the hosts are told either way.
"""

from __future__ import annotations

import logging

from server.rooms import acks, payloads
from server.rooms.errors import Conflict, RoomError
from server.rooms.models import Participant, Role
from server.rooms.owned_room import OwnedRoom, ResumeRecording, require_host
from server.rooms.ports import Recorder, RecordingContext, RecordingUpdate
from server.rooms.server_events import RecordingError

logger = logging.getLogger(__name__)


def _recorder(room: OwnedRoom) -> Recorder:
    if room.recorder is None:
        raise Conflict("recording_unavailable", "this node does not record")
    return room.recorder


def _context(room: OwnedRoom) -> RecordingContext:
    live = room.live
    return RecordingContext(
        floor=live.floor.identity if live.floor else None,
        agenda_index=live.agenda_index,
        participants=list(room.participants.values()),
    )


async def start(room: OwnedRoom, started_by: str) -> RecordingUpdate:
    """Start recording the session's media."""
    recorder = _recorder(room)
    room.require_open()
    media_room = room.media.media_room
    if media_room is None or media_room.closed:
        raise Conflict("no_media", "nobody has joined yet: start once media is flowing")
    update = await recorder.start(room.room, media_room, started_by, _context(room))
    # Applied before the ack: whoever started it sees the room already recording.
    await recording_changed(room, update)
    return update


async def stop(room: OwnedRoom) -> RecordingUpdate:
    """Stop the session's recording."""
    recorder = _recorder(room)
    if not recorder.is_recording(room.room_id):
        raise Conflict("not_recording", "this session is not being recorded")
    update = await recorder.stop(room.room_id)
    await recording_changed(room, update)
    return update


async def start_recording(
    room: OwnedRoom, actor: Participant, _: payloads.StartRecording
) -> acks.Ack:
    """The host starts recording."""
    require_host(actor)
    return acks.ok(recording=(await start(room, f"host:{actor.identity}")).payload)


async def stop_recording(
    room: OwnedRoom, actor: Participant, _: payloads.StopRecording
) -> acks.Ack:
    """The host stops recording."""
    require_host(actor)
    return acks.ok(recording=(await stop(room)).payload)


async def auto_record(room: OwnedRoom) -> None:
    """Start recording a session that records automatically (it just went live)."""
    try:
        await start(room, "auto")
    except RoomError as exc:
        logger.warning("automatic recording of %s did not start: %s", room.room_id, exc.message)


async def stop_if_recording(room: OwnedRoom) -> None:
    """Stop a recording in progress (the session ends or is deleted)."""
    if room.recorder is not None and room.recorder.is_recording(room.room_id):
        await stop(room)


async def recording_changed(room: OwnedRoom, update: RecordingUpdate) -> None:
    """Tell the room: the live state's recording flag, the timeline, a `recording` event.

    Each change is told once: the recorder also reports the changes the room asked
    for itself (start, stop), and those were applied already.
    """
    key = (update.id, update.state, update.part)
    if key == room.last_recording_change:
        return
    room.last_recording_change = key
    recording = update.state == "recording"
    room.state.recording_id = update.id if recording else None
    room.touch()
    await room.change_live(lambda s: s.model_copy(update={"recording": recording}))
    if recording:
        kind = "recording_resumed" if update.resumed else "recording_started"
        data: dict[str, object] = {"recording_id": update.id, "by": update.started_by}
        if update.resumed:
            data["part"] = update.part
        await room.timeline(kind, data)
    elif update.state == "failed":
        await room.timeline("recording_failed", {"recording_id": update.id, "error": update.error})
    else:
        data = {"recording_id": update.id, "state": update.state, "complete": update.complete}
        await room.timeline("recording_stopped", data)
    await room.broadcast("recording", update.payload)


async def tell_hosts(room: OwnedRoom, recording_id: str, message: str) -> None:
    """Send the session's hosts a `recording_error` (the session itself goes on)."""
    for participant in room.participants.values():
        if participant.role is Role.HOST:
            notice = RecordingError(recording_id=recording_id, error=message)
            await room.send(participant, "recording_error", notice)


async def recording_failed(room: OwnedRoom, update: RecordingUpdate) -> None:
    """Recording failed (disk full, archive unwritable): tell the hosts."""
    await tell_hosts(room, update.id, update.error or "recording failed")


#: A successor retries resuming while the old writer's lease runs out (it is
#: RecordingConfig.lease_ttl, 10 s by default), once a second.
RESUME_ATTEMPTS = 20
RESUME_RETRY_SECONDS = 1.0


async def resume_after_takeover(
    room: OwnedRoom, dead_writer: str | None = None, attempt: int = 1
) -> None:
    """The room moved here while it was recording: continue the recording in a new part.

    `dead_writer` is the previous owner when it died (not when it handed over): its
    lease on the recording is taken over at once. While another writer still holds
    the recording, try again a second later (never waiting inside the room's
    order); a recording that cannot be resumed is replaced by a new one if the
    session records automatically. The hosts are told when recording stopped.
    """
    recording_id = room.state.recording_id
    if recording_id is None or room.recorder is None or room.live.status == "ended":
        return
    if room.recorder.is_recording(room.room_id):
        return
    media_room = room.media.media_room
    if media_room is None:
        return  # nobody is here; `auto_record` or the host start one when they come
    try:
        update = await room.recorder.resume(
            recording_id, room.room, media_room, _context(room), dead_writer=dead_writer
        )
    except RoomError as exc:
        if exc.code == "recording_elsewhere" and attempt < RESUME_ATTEMPTS:
            room.post_later(RESUME_RETRY_SECONDS, ResumeRecording(attempt + 1, dead_writer))
            return
        logger.warning("recording %s of %s not resumed: %s", recording_id, room.room_id, exc)
        failure = exc.message
    else:
        await recording_changed(room, update)
        return
    room.state.recording_id = None
    room.touch()
    await room.change_live(lambda s: s.model_copy(update={"recording": False}))
    if room.room.auto_record:
        try:
            await start(room, "auto")
            return
        except RoomError as exc:
            failure = exc.message
    await tell_hosts(
        room, recording_id, f"the recording stopped when the server changed: {failure}"
    )


async def suspend_for_handover(room: OwnedRoom) -> None:
    """Close this node's part of the recording so the successor can resume it."""
    if room.recorder is not None and room.recorder.is_recording(room.room_id):
        try:
            await room.recorder.suspend(room.room_id)
        except Exception:
            logger.exception("recording of %s not suspended cleanly", room.room_id)
