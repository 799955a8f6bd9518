"""The stage seat (连线): the rules for bringing a member of the public on stage, as pure
functions over the live state.

An observer asks to be connected (a raised hand) or is simply chosen; a host or
co-host invites them (`invite`); they accept within `INVITE_SECONDS` (`accept`) or
decline; on accepting they go on stage as a guest and get the floor at once (the
host invited them to speak; a second click would only delay them). The host, a
co-host or the guest ends the connection (`end`); leaving and the end of the
session end it too. The room has one seat: one caller at a time, like a call-in.

Guests publish only while they hold the floor (`may_publish`): the owner applies it
to the media whenever the floor or a role changes, so a guest whose turn ends
stops reaching everyone at once, and its next publish offer is refused.
The handlers that apply these rules are in `server.rooms.stage_control`.
"""

from __future__ import annotations

from server.rooms import floor
from server.rooms.errors import Conflict
from server.rooms.models import LiveState, Role, StageSeat

#: How long an invitation waits for the observer's answer.
INVITE_SECONDS = 60.0
#: How long an invitation to a broadcast viewer (a call-in) waits: the viewer's page
#: learns of it by polling, and they answer from the broadcast page.
CALL_IN_INVITE_SECONDS = 120.0
#: Once the viewer accepted, how long their page has to open the room (device check
#: included) and take the seat.
CALL_IN_JOIN_SECONDS = 120.0


def may_publish(role: Role, holds_floor: bool) -> bool:
    """Whether a participant of this role may send media now: observers never, guests only
    while they hold the floor, everyone else always."""
    if role is Role.OBSERVER:
        return False
    if role is Role.GUEST:
        return holds_floor
    return True


def role_on_stage(live: LiveState, identity: str, token_role: Role) -> Role:
    """The role a participant has in the room: its token's, raised to guest while an
    observer is on stage."""
    seat = live.stage
    if token_role is Role.OBSERVER and seat is not None and seat.identity == identity:
        return Role.GUEST if seat.status == "on_stage" else token_role
    return token_role


def pending_invite(live: LiveState, now: float) -> StageSeat | None:
    """The invitation waiting for an answer, if it has not expired."""
    seat = live.stage
    if seat is not None and seat.status == "invited" and seat.expires_at > now:
        return seat
    return None


def invite(
    live: LiveState,
    identity: str,
    by: str,
    now: float,
    invite_id: str,
    time_limit_seconds: int | None = None,
    call_in: str | None = None,
) -> LiveState:
    """Invite `identity` on stage (the caller checked it is a present observer, or it is
    the fresh identity of a broadcast viewer's `call_in` request)."""
    _require_open(live)
    seat = live.stage
    if seat is not None and (seat.status == "on_stage" or pending_invite(live, now) is not None):
        raise Conflict("stage_busy", "someone is already on stage or invited; end that first")
    invitation = StageSeat(
        identity=identity,
        status="invited",
        by=by,
        invite_id=invite_id,
        since=now,
        expires_at=now + (CALL_IN_INVITE_SECONDS if call_in else INVITE_SECONDS) * 1000.0,
        time_limit_seconds=time_limit_seconds,
        call_in=call_in,
    )
    return live.model_copy(update={"stage": invitation})


def accept(live: LiveState, identity: str, now: float, grant_id: str) -> LiveState:
    """`identity` accepts its invitation: on stage, with the floor (leaving the queue)."""
    _require_open(live)
    seat = pending_invite(live, now)
    if seat is None or seat.identity != identity:
        raise Conflict("no_stage_invite", "you have no invitation to go on stage (or it expired)")
    on_stage = seat.model_copy(update={"status": "on_stage", "since": now})
    granted = floor.grant(live, identity, now, seat.time_limit_seconds, grant_id)
    return granted.model_copy(update={"stage": on_stage})


def decline(live: LiveState, identity: str, now: float) -> LiveState:
    """`identity` declines its invitation; the seat is free again."""
    seat = pending_invite(live, now)
    if seat is None or seat.identity != identity:
        raise Conflict("no_stage_invite", "you have no invitation to go on stage (or it expired)")
    return live.model_copy(update={"stage": None})


def expire(live: LiveState, invite_id: str, now: float) -> LiveState:
    """An invitation's time ran out: free the seat, unless it was answered, replaced or
    extended (a viewer who accepted a call-in has longer to take the seat)."""
    seat = live.stage
    if seat is None or seat.invite_id != invite_id or seat.status != "invited":
        return live
    if seat.expires_at > now:
        return live
    return live.model_copy(update={"stage": None})


def extend(live: LiveState, call_in: str, now: float) -> LiveState:
    """The viewer of `call_in` accepted on the broadcast page: the invitation waits
    `CALL_IN_JOIN_SECONDS` more for them to enter the room and take the seat."""
    seat = pending_invite(live, now)
    if seat is None or seat.call_in != call_in:
        raise Conflict("call_in_expired", "the invitation lapsed or was withdrawn")
    extended = seat.model_copy(update={"expires_at": now + CALL_IN_JOIN_SECONDS * 1000.0})
    return live.model_copy(update={"stage": extended})


def end(live: LiveState) -> LiveState:
    """End the connection (or withdraw the invitation): the seat is free, and a guest on
    stage gives the floor back."""
    seat = live.stage
    if seat is None:
        raise Conflict("not_on_stage", "nobody is on stage or invited")
    updated = live.model_copy(update={"stage": None})
    holds_floor = live.floor is not None and live.floor.identity == seat.identity
    if seat.status == "on_stage" and holds_floor:
        updated = floor.revoke(updated)
    return updated


def _require_open(live: LiveState) -> None:
    if live.status == "ended":
        raise Conflict("session_ended", "the session has ended")
