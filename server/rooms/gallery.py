"""The public gallery: questions and opinions from observers, shown only once moderated.

Anyone in the session may post (observers are who it is for); a post goes into
the moderation queue, which reaches only those who run it — hosts, co-hosts
and moderators — as `gallery_queue` events and in their snapshot. They approve
it (everyone gets `gallery_item`), answer it in text (approving it), put it on
everyone's screen (approving it; `gallery_on_screen`), or reject it.

Nothing a poster wrote reaches other participants before approval: the
`gallery_submitted` timeline entry carries the item's id, kind and agenda item
only, and is not broadcast; `gallery_approved` carries the text, so the archive
and the minutes see approved items only.

The queue is bounded (`MAX_GALLERY_ITEMS`): beyond it the oldest handled items
are dropped (the timeline keeps them); when every item still waits, new posts
are refused (`gallery_full`).
"""

from __future__ import annotations

from server.rooms import acks, payloads
from server.rooms.errors import Conflict, NotFound, RateLimited
from server.rooms.models import GalleryItem, Participant
from server.rooms.owned_room import OwnedRoom, now_ms, require_queue_runner
from server.rooms.server_events import GalleryOnScreen, GalleryPublished, GalleryQueueChanged

#: Items one room's queue keeps (waiting and handled); the oldest handled go first.
MAX_GALLERY_ITEMS = 500


async def post(room: OwnedRoom, actor: Participant, req: payloads.GalleryPost) -> acks.Ack:
    """Put a question or opinion in the moderation queue, tied to the current agenda item."""
    room.require_open()
    if not room.limits.allow_gallery_post(actor.identity):
        raise RateLimited(
            "gallery_rate_limited",
            "you have posted several questions just now; try again in a minute",
        )
    _make_room(room)
    state = room.state
    item = GalleryItem(
        id=f"g{state.gallery_next}",
        kind=req.kind,
        text=req.text,
        name=req.name,
        district=req.district,
        agenda_index=room.live.agenda_index,
        by=actor.identity,
        submitted_at=now_ms(),
    )
    state.gallery_next += 1
    state.gallery[item.id] = item
    room.touch()
    await room.timeline(
        "gallery_submitted",
        {"id": item.id, "kind": item.kind, "agenda_index": item.agenda_index},
        tell=False,
    )
    await _tell_queue_runners(room, item)
    return acks.ok(id=item.id, status=item.status)


def _make_room(room: OwnedRoom) -> None:
    gallery = room.state.gallery
    if len(gallery) < MAX_GALLERY_ITEMS:
        return
    handled = next(
        (
            i.id
            for i in gallery.values()
            if i.status != "pending" and i.id != room.state.gallery_on_screen
        ),
        None,
    )
    if handled is None:
        raise Conflict("gallery_full", "too many questions wait for the moderators; try later")
    del gallery[handled]


async def approve(room: OwnedRoom, actor: Participant, req: payloads.GalleryApprove) -> acks.Ack:
    """Show an item to everyone in the room."""
    item = await _approved(room, actor, req.id)
    return acks.ok(item=item)


async def reject(room: OwnedRoom, actor: Participant, req: payloads.GalleryReject) -> acks.Ack:
    """Turn an item down: it is never shown (an approved one cannot be taken back)."""
    require_queue_runner(actor)
    room.require_open()
    item = _find(room, req.id)
    if item.status == "approved":
        raise Conflict("gallery_already_approved", "this item is already shown to everyone")
    if item.status == "rejected":
        return acks.ok(item=item)
    item = _update(room, item, status="rejected", handled_by=actor.identity)
    await room.timeline("gallery_rejected", {"id": item.id, "by": actor.identity})
    await _tell_queue_runners(room, item)
    return acks.ok(item=item)


async def answer(room: OwnedRoom, actor: Participant, req: payloads.GalleryAnswer) -> acks.Ack:
    """Answer an item in text; the item (approved if it was not) and answer reach everyone."""
    item = await _approved(room, actor, req.id)
    item = _update(room, item, answer=req.text, handled_by=actor.identity)
    # The whole (public) item again: a record whose span starts after the approval still
    # has the question the answer belongs to.
    await room.timeline("gallery_answered", {**_public_entry(item), "by": actor.identity})
    await _tell_queue_runners(room, item)
    await room.broadcast("gallery_item", GalleryPublished(item=item.public()))
    if room.state.gallery_on_screen == item.id:
        await room.broadcast("gallery_on_screen", GalleryOnScreen(item=item.public()))
    return acks.ok(item=item)


async def show(room: OwnedRoom, actor: Participant, req: payloads.GalleryShow) -> acks.Ack:
    """Put an item on everyone's screen (approving it), or take the one shown off."""
    if req.id is None:
        require_queue_runner(actor)
        room.require_open()
        shown = room.state.gallery_on_screen
        if shown is not None:
            room.state.gallery_on_screen = None
            room.touch()
            await room.timeline("gallery_hidden", {"id": shown, "by": actor.identity})
            await room.broadcast("gallery_on_screen", GalleryOnScreen(item=None))
        return acks.ok(on_screen=None)
    item = await _approved(room, actor, req.id)
    if room.state.gallery_on_screen != item.id:
        room.state.gallery_on_screen = item.id
        room.touch()
        await room.timeline("gallery_shown", {"id": item.id, "by": actor.identity})
        await room.broadcast("gallery_on_screen", GalleryOnScreen(item=item.public()))
    return acks.ok(on_screen=item.id)


async def _approved(room: OwnedRoom, actor: Participant, item_id: str) -> GalleryItem:
    """The item, approved now if it was waiting (everyone is told); refused if rejected."""
    require_queue_runner(actor)
    room.require_open()
    item = _find(room, item_id)
    if item.status == "rejected":
        raise Conflict("gallery_rejected", "this item was rejected; it cannot be shown")
    if item.status == "approved":
        return item
    item = _update(room, item, status="approved", handled_by=actor.identity)
    await room.timeline("gallery_approved", {**_public_entry(item), "by": actor.identity})
    await _tell_queue_runners(room, item)
    await room.broadcast("gallery_item", GalleryPublished(item=item.public()))
    return item


def _public_entry(item: GalleryItem) -> dict[str, object]:
    """What the timeline keeps of an approved item: what everyone was shown."""
    return item.public().model_dump(mode="json")


def _find(room: OwnedRoom, item_id: str) -> GalleryItem:
    item = room.state.gallery.get(item_id)
    if item is None:
        raise NotFound("gallery_item_not_found", f"no gallery item {item_id!r} is kept")
    return item


def _update(room: OwnedRoom, item: GalleryItem, **changes: object) -> GalleryItem:
    updated = item.model_copy(update=changes)
    room.state.gallery[item.id] = updated
    room.touch()
    return updated


async def _tell_queue_runners(room: OwnedRoom, item: GalleryItem) -> None:
    notice = GalleryQueueChanged(item=item)
    for runner in room.queue_runners():
        await room.send(runner, "gallery_queue", notice)
