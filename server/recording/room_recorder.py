"""RoomRecorder: the recording service as a room's owner uses it (`server.rooms.ports.Recorder`).

The domain knows recordings only through that small interface; this adapter
turns its calls into the recording service's and its results into the
`RecordingUpdate`s the room reports.
"""

from __future__ import annotations

from server.media import MediaRoom
from server.rooms.models import Room
from server.rooms.ports import RecordingContext, RecordingUpdate

from .errors import RecordingConflict
from .models import RecordingInfo
from .service import RecordingService


def recording_update(info: RecordingInfo) -> RecordingUpdate:
    """How a room reports a recording's state."""
    return RecordingUpdate(
        id=info.id,
        state=info.state,
        started_by=info.started_by,
        error=info.error,
        complete=info.complete,
        part=info.part,
        resumed=info.resumed,
        payload=info,
    )


class RoomRecorder:
    """`server.rooms.ports.Recorder` over a RecordingService."""

    def __init__(self, service: RecordingService) -> None:
        self.service = service

    def is_recording(self, room_id: str) -> bool:
        """Whether this node is recording the room now."""
        return self.service.is_recording(room_id)

    async def start(
        self, room: Room, media_room: MediaRoom, started_by: str, context: RecordingContext
    ) -> RecordingUpdate:
        """Start recording the room's media."""
        info = await self.service.start(room.id, media_room, room, started_by, context)
        return recording_update(info)

    async def resume(
        self,
        recording_id: str,
        room: Room,
        media_room: MediaRoom,
        context: RecordingContext,
        *,
        dead_writer: str | None = None,
    ) -> RecordingUpdate:
        """Continue a recording whose previous writer went away, in a new part.

        ``dead_writer``: the previous owner, when it died (its room lease expired; not
        when it handed the room over): its recording lease is taken over at once instead
        of being waited out. Without it, a writer lease still held by a node whose
        heartbeat has expired (a dead node: its rooms' leases expired with it) is taken
        over the same way. Errors as ``RecordingService.resume``: ``recording_elsewhere``
        (a live node writes it; retry once its lease has expired, within ``lease_ttl``),
        ``not_resumable`` (start a new recording).
        """
        service = self.service
        try:
            info = await service.resume(
                recording_id, media_room, room, context, dead_writer=dead_writer
            )
        except RecordingConflict as exc:
            if exc.code != "recording_elsewhere" or dead_writer is not None:
                raise
            holder = await service.index.lease_holder(recording_id)
            if holder is not None and (await service.store.alive([holder]))[holder]:
                raise
            # The writer's node is dead: do not wait up to lease_ttl for its lease.
            info = await service.resume(recording_id, media_room, room, context, dead_writer=holder)
        return recording_update(info)

    async def suspend(self, room_id: str) -> None:
        """Close this node's part cleanly so a successor can resume (hand-over)."""
        if self.service.is_recording(room_id):
            await self.service.suspend(room_id)

    async def stop(self, room_id: str) -> RecordingUpdate:
        """Stop recording."""
        return recording_update(await self.service.stop(room_id))
