"""The call-in queue's bookkeeping: a request's status changes and who is told of them.

Shared by the call-in commands (`server.rooms.call_ins`) and the stage
(`server.rooms.stage_control`), which settles a request as its seat is taken, lapses or
ends. Only hosts, co-hosts and moderators hear of requests (`call_in_queue`).
"""

from __future__ import annotations

from server.rooms.models import CALL_IN_OPEN, CallInRecord, CallInStatus, StageSeat
from server.rooms.owned_room import OwnedRoom, now_ms
from server.rooms.server_events import CallInQueueChanged

#: What becomes of an open request when its seat is freed, by the seat's status then.
_AFTER_SEAT: dict[str, CallInStatus] = {"invited": "withdrawn", "on_stage": "ended"}


async def settle(
    room: OwnedRoom,
    call_in: str,
    new_status: CallInStatus,
    *,
    identity: str | None = None,
    by: str | None = None,
) -> CallInRecord:
    """Set a request's status (hosts are told)."""
    record = room.state.call_ins[call_in]
    changes: dict[str, object] = {"status": new_status, "updated_at": now_ms()}
    if identity is not None:
        changes["identity"] = identity
    if by is not None:
        changes["handled_by"] = by
    record = record.model_copy(update=changes)
    room.state.call_ins[call_in] = record
    room.touch()
    await tell(room, record)
    return record


async def seat_changed(room: OwnedRoom, seat: StageSeat, new_status: CallInStatus) -> None:
    """The seat of a viewer's request was taken or lapsed: settle the request."""
    if seat.call_in is not None and seat.call_in in room.state.call_ins:
        await settle(room, seat.call_in, new_status)


async def seat_freed(room: OwnedRoom, seat: StageSeat) -> None:
    """The seat of a viewer's request is free again: the request is over, unless it was
    settled already (declined by the viewer)."""
    record = room.state.call_ins.get(seat.call_in or "")
    if record is not None and record.status in CALL_IN_OPEN:
        await settle(room, record.id, _AFTER_SEAT[seat.status])


async def tell(room: OwnedRoom, record: CallInRecord) -> None:
    """Tell the hosts, co-hosts and moderators in the session of a request, new or changed."""
    notice = CallInQueueChanged(item=record.for_moderators())
    for runner in room.queue_runners():
        await room.send(runner, "call_in_queue", notice)
