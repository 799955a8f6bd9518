"""Call-ins (连线申请): a viewer of the live broadcast asks to speak, and a host brings them
on stage.

The viewer is not in the room. From the broadcast page they ask (`ask`: name, optional
district, a short note); the request waits in the room's call-in queue, which reaches
only hosts, co-hosts and moderators (`call_in_queue` events, their snapshot). The viewer's
page holds an unguessable handle it got when asking (the owner keeps only its SHA-256)
and asks with it how the request stands (`status`).

A host or co-host invites a request (`invite`): the room's one stage seat
(`server.rooms.stage`) is reserved for a fresh identity made for this viewer, for
`stage.CALL_IN_INVITE_SECONDS`. The viewer's page sees `invited`, and on the viewer's
accept (`accept`) gets what its join credential says — that identity, the name they gave,
role observer, the main venue (where the public is shown, as for viewers' questions) —
and has `stage.CALL_IN_JOIN_SECONDS` to enter the room and take the seat, which it does
with the ordinary `stage_accept` (the page does not ask the viewer twice). From then on it
is the stage as for any observer: a guest with the floor, then an observer again when
the connection ends.

Nothing the viewer sends decides the room (the URL's, whose broadcast access the edge
checked), the role or the venue. The handle works once for the credential (`accept` of
an accepted request is `call_in_used`), for its own room only, and not after the request
closed. The queue is bounded: `MAX_PENDING` requests wait at most, one open request per
viewer, `MAX_CALL_INS` kept (the oldest closed ones go first).
"""

from __future__ import annotations

import secrets

from server.rooms import acks, call_in_queue, payloads, stage, stage_control
from server.rooms.errors import Conflict, InvalidRequest, NotFound
from server.rooms.models import CALL_IN_OPEN, CallInRecord, Participant
from server.rooms.owned_room import (
    ExpireStageInvite,
    OwnedRoom,
    now_ms,
    require_moderator,
    require_queue_runner,
)

#: Requests that may wait for an answer in one room at once.
MAX_PENDING = 20
#: Requests one room keeps (open and closed); the oldest closed ones are dropped first.
MAX_CALL_INS = 200
#: The identities viewers join under start with this (the rest is random).
IDENTITY_PREFIX = "callin-"


async def viewer_request(
    room: OwnedRoom,
    op: payloads.CallInOp,
    handle_digest: str,
    viewer: str = "",
    body: payloads.CallInAsk | None = None,
) -> acks.Ack:
    """Apply what a viewer's page asked for (the edge checked access, body and rate)."""
    if op == "ask":
        if body is None:
            raise InvalidRequest("invalid_request", "a request to speak needs its details")
        return await ask(room, viewer, body, handle_digest)
    if op == "status":
        return await status(room, handle_digest)
    if op == "accept":
        return await accept(room, handle_digest)
    return await decline(room, handle_digest)


async def ask(
    room: OwnedRoom, viewer: str, req: payloads.CallInAsk, handle_digest: str
) -> acks.Ack:
    """A viewer asks to speak: the request joins the queue (hosts are told)."""
    room.require_open()
    calls = room.state.call_ins
    if any(c.by == viewer and c.status in CALL_IN_OPEN for c in calls.values()):
        raise Conflict("call_in_open", "you have already asked to speak; wait for the answer")
    if sum(c.status == "pending" for c in calls.values()) >= MAX_PENDING:
        raise Conflict("call_ins_full", "too many viewers wait to speak; try again later")
    _make_room(room)
    now = now_ms()
    record = CallInRecord(
        id=f"c{room.state.call_in_next}",
        name=req.name,
        district=req.district,
        note=req.note,
        submitted_at=now,
        updated_at=now,
        by=viewer,
        handle_digest=handle_digest,
    )
    room.state.call_in_next += 1
    calls[record.id] = record
    room.touch()
    # The entry names no one: what a viewer wrote reaches hosts only.
    await room.timeline("call_in_requested", {"id": record.id}, tell=False)
    await call_in_queue.tell(room, record)
    return acks.ok(id=record.id, status=record.status)


async def status(room: OwnedRoom, handle_digest: str) -> acks.Ack:
    """How the viewer's request stands (and until when an invitation waits)."""
    record = _by_handle(room, handle_digest)
    seat = room.live.stage
    expires_at = (
        seat.expires_at
        if seat is not None and seat.call_in == record.id and seat.status == "invited"
        else None
    )
    return acks.ok(id=record.id, status=record.status, expires_at=expires_at)


async def accept(room: OwnedRoom, handle_digest: str) -> acks.Ack:
    """The viewer accepts the invitation: who they will be in the room (the edge signs the
    credential), and longer to take the seat. Once only."""
    room.require_open()
    record = _by_handle(room, handle_digest)
    if record.status in ("accepted", "on_stage"):
        raise Conflict("call_in_used", "this invitation was already accepted")
    if record.status == "pending":
        raise Conflict("call_in_not_invited", "the host has not invited you yet")
    if record.status == "expired":
        raise Conflict("call_in_expired", "the invitation lapsed")
    if record.status != "invited" or record.identity is None:
        raise Conflict("call_in_closed", "this request is closed")
    now = now_ms()
    stage.extend(room.live, record.id, now)  # refuses a lapsed seat before anything changes
    await room.change_live(lambda s: stage.extend(s, record.id, now))
    seat = room.live.stage
    assert seat is not None
    room.post_later(stage.CALL_IN_JOIN_SECONDS + 1.0, ExpireStageInvite(seat.invite_id))
    # Invited by a host: a locked session or a lobby does not hold them back.
    room.state.admitted.add(record.identity)
    record = await call_in_queue.settle(room, record.id, "accepted")
    await room.timeline("call_in_accepted", {"id": record.id, "identity": record.identity})
    return acks.ok(
        id=record.id, identity=record.identity, name=record.name, venue=room.room.main_venue.id
    )


async def decline(room: OwnedRoom, handle_digest: str) -> acks.Ack:
    """The viewer takes the request back, or declines the invitation (the seat is free)."""
    record = _by_handle(room, handle_digest)
    if record.status == "on_stage":
        raise Conflict("call_in_on_stage", "you are on stage; leave it from the room")
    if record.status not in CALL_IN_OPEN:
        return acks.ok(id=record.id, status=record.status)
    record = await call_in_queue.settle(room, record.id, "declined")
    seat = room.live.stage
    if seat is not None and seat.call_in == record.id:
        await stage_control.finish(room, seat, by=record.identity, reason="declined")
    await room.timeline("call_in_declined", {"id": record.id})
    return acks.ok(id=record.id, status=record.status)


async def invite(room: OwnedRoom, actor: Participant, req: payloads.CallInInvite) -> acks.Ack:
    """Host or co-host: invite a waiting request on stage (the room's one seat is reserved
    for the viewer's fresh identity)."""
    require_moderator(actor)
    room.require_open()
    record = _find(room, req.id)
    if record.status != "pending":
        raise Conflict("call_in_not_pending", "this request is not waiting for an answer")
    identity = f"{IDENTITY_PREFIX}{secrets.token_hex(6)}"
    invite_id = secrets.token_hex(8)
    state, _ = await room.change_live(
        lambda s: stage.invite(
            s, identity, actor.identity, now_ms(), invite_id, req.time_limit_seconds, record.id
        )
    )
    room.post_later(stage.CALL_IN_INVITE_SECONDS + 1.0, ExpireStageInvite(invite_id))
    record = await call_in_queue.settle(
        room, record.id, "invited", identity=identity, by=actor.identity
    )
    await room.timeline(
        "stage_invited",
        {
            "identity": identity,
            "name": record.name,
            "venue": room.room.main_venue.id,
            "role": "observer",
            "by": actor.identity,
            "call_in": record.id,
        },
    )
    return acks.ok(live=state, item=record.for_moderators())


async def dismiss(room: OwnedRoom, actor: Participant, req: payloads.CallInDismiss) -> acks.Ack:
    """Host, co-host or moderator: turn a waiting request down."""
    require_queue_runner(actor)
    record = _find(room, req.id)
    if record.status != "pending":
        raise Conflict("call_in_not_pending", "this request is not waiting for an answer")
    record = await call_in_queue.settle(room, record.id, "dismissed", by=actor.identity)
    await room.timeline("call_in_dismissed", {"id": record.id, "by": actor.identity}, tell=False)
    return acks.ok(item=record.for_moderators())


def _by_handle(room: OwnedRoom, handle_digest: str) -> CallInRecord:
    for record in room.state.call_ins.values():
        if secrets.compare_digest(record.handle_digest, handle_digest):
            return record
    raise NotFound("call_in_not_found", "no request of yours is known in this session")


def _find(room: OwnedRoom, call_in: str) -> CallInRecord:
    record = room.state.call_ins.get(call_in)
    if record is None:
        raise NotFound("call_in_not_found", f"no call-in request {call_in!r} is kept")
    return record


def _make_room(room: OwnedRoom) -> None:
    calls = room.state.call_ins
    if len(calls) < MAX_CALL_INS:
        return
    closed = next((c.id for c in calls.values() if c.status not in CALL_IN_OPEN), None)
    if closed is None:
        raise Conflict("call_ins_full", "too many viewers wait to speak; try again later")
    del calls[closed]
