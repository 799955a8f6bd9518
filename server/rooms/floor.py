"""Floor control as pure functions of the live state: hands, queue, grants, agenda, lock.

Each function takes the current LiveState and returns the next one, raising a
RoomError to refuse. They have no side effects because the store may call them
again when another writer wins a race.
"""

from __future__ import annotations

from server.rooms.errors import Conflict, InvalidRequest
from server.rooms.models import FloorGrant, LiveState, ScreenShare

#: Bound on the speaking queue; larger rooms wait for the host to work through it.
MAX_QUEUE_LENGTH = 500


def _require_open(state: LiveState) -> None:
    if state.status == "ended":
        raise Conflict("session_ended", "the session has ended")


def raise_hand(state: LiveState, identity: str) -> LiveState:
    """Put `identity` at the end of the speaking queue (no change if already queued)."""
    _require_open(state)
    if state.floor is not None and state.floor.identity == identity:
        raise Conflict("already_has_floor", "you already have the floor")
    if identity in state.queue:
        return state
    if len(state.queue) >= MAX_QUEUE_LENGTH:
        raise Conflict("queue_full", "the speaking queue is full")
    return state.model_copy(update={"queue": [*state.queue, identity]})


def lower_hand(state: LiveState, identity: str) -> LiveState:
    """Take `identity` out of the queue (no change if not queued)."""
    if identity not in state.queue:
        return state
    return state.model_copy(update={"queue": [q for q in state.queue if q != identity]})


def grant(
    state: LiveState, identity: str, now: float, time_limit_seconds: int | None, grant_id: str
) -> LiveState:
    """Give the floor to `identity` (leaving the queue), optionally for a limited time."""
    _require_open(state)
    deadline = now + time_limit_seconds * 1000.0 if time_limit_seconds else None
    floor = FloorGrant(identity=identity, grant_id=grant_id, granted_at=now, deadline=deadline)
    return _screen_follows_floor(
        state.model_copy(
            update={"floor": floor, "queue": [q for q in state.queue if q != identity]}
        )
    )


def revoke(state: LiveState) -> LiveState:
    """Take the floor back; the host's venue is shown again."""
    return _screen_follows_floor(state.model_copy(update={"floor": None}))


def _screen_follows_floor(state: LiveState) -> LiveState:
    """A member's screen share ends with their turn (a host's does not)."""
    screen = state.screen
    if screen is None or screen.by_host:
        return state
    if state.floor is not None and state.floor.identity == screen.identity:
        return state
    return state.model_copy(update={"screen": None})


def share_screen(state: LiveState, share: ScreenShare) -> LiveState:
    """Show `share` in everyone's spotlight: the host, or the floor holder, during their turn."""
    _require_open(state)
    if state.screen is not None and state.screen.identity != share.identity:
        raise Conflict("screen_busy", "someone else is sharing a screen; it must stop first")
    holds_floor = state.floor is not None and state.floor.identity == share.identity
    if not share.by_host and not holds_floor:
        raise Conflict("not_floor_holder", "only the host or the floor holder may share a screen")
    return state.model_copy(update={"screen": share})


def stop_screen(state: LiveState) -> LiveState:
    """Nobody shares a screen any more."""
    return state.model_copy(update={"screen": None})


def next_in_queue(state: LiveState, present: set[str]) -> str:
    """The first queued identity that is still connected."""
    _require_open(state)
    for identity in state.queue:
        if identity in present:
            return identity
    raise Conflict("queue_empty", "nobody present is waiting for the floor")


def expire(state: LiveState, grant_id: str) -> LiveState:
    """End a time-limited grant, unless the floor has changed hands since."""
    if state.floor is None or state.floor.grant_id != grant_id:
        return state
    return revoke(state)


def forget(state: LiveState, identity: str) -> LiveState:
    """Remove every trace of a participant who left or was removed (queue, floor, pin)."""
    updated = lower_hand(state, identity)
    if updated.floor is not None and updated.floor.identity == identity:
        updated = revoke(updated)
    if updated.pinned == identity:
        updated = updated.model_copy(update={"pinned": None})
    if updated.screen is not None and updated.screen.identity == identity:
        updated = stop_screen(updated)
    return updated


def move_in_queue(state: LiveState, identity: str, position: int) -> LiveState:
    """Move a queued identity to `position` (0 is next; beyond the end is last)."""
    _require_open(state)
    if identity not in state.queue:
        raise Conflict("not_in_queue", f"{identity!r} is not waiting for the floor")
    rest = [q for q in state.queue if q != identity]
    target = min(position, len(rest))
    return state.model_copy(update={"queue": [*rest[:target], identity, *rest[target:]]})


def extend(state: LiveState, seconds: int) -> LiveState:
    """Give the current speaker `seconds` more (a timed floor only)."""
    _require_open(state)
    if state.floor is None:
        raise Conflict("no_floor", "nobody has the floor")
    if state.floor.deadline is None:
        raise Conflict("floor_untimed", "the floor has no time limit to extend")
    longer = state.floor.model_copy(update={"deadline": state.floor.deadline + seconds * 1000.0})
    return state.model_copy(update={"floor": longer})


def pin(state: LiveState, identity: str | None) -> LiveState:
    """Put `identity` in everyone's spotlight (over the floor holder); None unpins."""
    _require_open(state)
    return state.model_copy(update={"pinned": identity})


def set_agenda_index(state: LiveState, index: int | None, agenda_length: int) -> LiveState:
    """Move to agenda item `index`, or to the next item when None."""
    _require_open(state)
    if agenda_length == 0:
        raise Conflict("no_agenda", "this session has no agenda")
    target = state.agenda_index + 1 if index is None else index
    if not 0 <= target < agenda_length:
        raise InvalidRequest(
            "agenda_out_of_range", f"agenda item {target} does not exist (0..{agenda_length - 1})"
        )
    return state.model_copy(update={"agenda_index": target})


def set_locked(state: LiveState, locked: bool) -> LiveState:
    """Lock or unlock the session against new participants."""
    _require_open(state)
    return state.model_copy(update={"locked": locked})


def go_live(state: LiveState) -> LiveState:
    """A scheduled session becomes live when its first participant joins."""
    if state.status == "scheduled":
        return state.model_copy(update={"status": "live"})
    return state


def end(state: LiveState) -> LiveState:
    """End the session for everyone."""
    _require_open(state)
    return state.model_copy(
        update={
            "status": "ended",
            "floor": None,
            "queue": [],
            "locked": True,
            "pinned": None,
            "screen": None,
        }
    )
