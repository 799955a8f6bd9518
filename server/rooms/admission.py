"""Who may enter a session, as pure rules over the room's state.

The signaling edge applies the final ones (ended, removed) at connect to the
last written snapshot, for a quick refusal; the room's owner applies them all
at join, on its current state.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from server.rooms.errors import Conflict, Forbidden, Unauthorized
from server.rooms.models import Invitee, LiveState, Participant, Role, Room


def check_token_room(
    room: Room, incarnation: str, invitee: Invitee, *, for_session: bool = True
) -> None:
    """Refuse a token of another incarnation of this room id, or naming a missing venue;
    and, `for_session`, a viewer token (it opens the live broadcast) or an operator token
    (it opens the session's control room), which never enter the session itself."""
    if incarnation != room.incarnation:
        # The room was deleted and its id reused: every old link is void.
        raise Unauthorized("token_invalid", "this link belongs to an earlier session")
    if room.venue(invitee.venue) is None:
        raise Unauthorized("token_invalid", "the token names a venue this session does not have")
    if not for_session:
        return
    if invitee.role is Role.VIEWER:
        raise Forbidden("viewer_token", "a viewer token opens the live broadcast, not the session")
    if invitee.role is Role.OPERATOR:
        raise Forbidden(
            "operator_token", "an operator token opens the control room, not the session"
        )


def check_not_excluded(live: LiveState, invitee: Invitee, banned: Collection[str]) -> None:
    """Refuse a session that ended, or an identity the host removed.

    Both are final, so a state written a moment ago answers them correctly: the
    edge checks them at connect against the last written snapshot.
    """
    if live.status == "ended":
        raise Conflict("session_ended", "the session has ended")
    if invitee.identity in banned:
        raise Forbidden("removed", "the host removed you from this session")


def check_room_open(
    live: LiveState,
    invitee: Invitee,
    *,
    admitted: Collection[str],
    participants: Mapping[str, Participant],
    max_participants: int,
) -> None:
    """Refuse a locked or a full session (only the owner's current state can tell)."""
    # Hosts and co-hosts run the session: they always get in.
    is_host = invitee.role.moderates
    if live.locked and not is_host and invitee.identity not in admitted:
        raise Conflict("room_locked", "the host has locked this session")
    # Someone reconnecting takes their own place back; the host always gets in.
    returning = invitee.identity in participants
    if not is_host and not returning and len(participants) >= max_participants:
        raise Conflict("room_full", f"the session is full ({max_participants} participants)")


def must_wait(room: Room, live: LiveState, invitee: Invitee, *, admitted: Collection[str]) -> bool:
    """Whether a newcomer waits in the lobby: a lobby room or a locked session, unless a
    host or co-host, or admitted before (joined once, or let in from the lobby)."""
    if invitee.role.moderates or invitee.identity in admitted:
        return False
    return room.lobby or live.locked


def check_admission(
    live: LiveState,
    invitee: Invitee,
    *,
    banned: Collection[str],
    admitted: Collection[str],
    participants: Mapping[str, Participant],
    max_participants: int,
) -> None:
    """Every rule at once (the owner, at join)."""
    check_not_excluded(live, invitee, banned)
    check_room_open(
        live,
        invitee,
        admitted=admitted,
        participants=participants,
        max_participants=max_participants,
    )
