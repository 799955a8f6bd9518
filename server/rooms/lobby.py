"""The lobby: newcomers wait until a host or co-host lets them in, or turns them away.

A room with `lobby: true`, or a locked session, puts a newcomer's `join` in the
lobby: the ack is `{ok: false, error: {code: "in_lobby"}}` and the connection
stays open (the edge keeps it as connected-but-waiting, with its own time bound).
Hosts and co-hosts see who waits (`lobby` events, and `lobby` in their
snapshot); `admit` tells the waiting connection `admitted` — it sends `join`
again and goes straight in — and `deny` tells it `lobby_closed` and closes it.
The owner bounds how many wait per room.
"""

from __future__ import annotations

from server.rooms import acks, payloads
from server.rooms.errors import Conflict
from server.rooms.models import Caller, Invitee, Participant, Waiting
from server.rooms.owned_room import OwnedRoom, now_ms, require_moderator
from server.rooms.ports import SessionRef
from server.rooms.server_events import Admitted, Lobby, LobbyClosed

#: People one room's lobby holds at most; more are refused (`lobby_full`).
MAX_LOBBY_SIZE = 200


async def wait(room: OwnedRoom, caller: Caller) -> acks.Ack:
    """Put the caller in the lobby (again); the hosts are told."""
    state = room.state
    earlier = state.lobby.get(caller.identity)
    if earlier is None and len(state.lobby) >= MAX_LOBBY_SIZE:
        raise Conflict("lobby_full", "the lobby is full; try again shortly")
    if earlier is not None and earlier.session != caller.session:
        # The same person from a new tab or after a reload: the newer connection waits.
        target = SessionRef(earlier.node, earlier.session)
        await room.send(target, "lobby_closed", LobbyClosed(reason="replaced"))
        await room.close_connection(target, "replaced")
    entry = Waiting(
        **caller.model_dump(exclude={"session", "node"}),
        session=caller.session,
        node=caller.node,
        since=earlier.since if earlier is not None else now_ms(),
    )
    state.lobby[caller.identity] = entry
    room.touch()
    if earlier is None or earlier.session != caller.session:
        await tell_moderators(room)
    return acks.error("in_lobby", "the host will let you in shortly; stay on this page", 409)


async def tell_moderators(room: OwnedRoom) -> None:
    """Send the hosts and co-hosts who waits now."""
    notice = Lobby(waiting=room.lobby_entries())
    for moderator in room.moderators():
        await room.send(moderator, "lobby", notice)


async def admit(room: OwnedRoom, actor: Participant, req: payloads.Admit) -> acks.Ack:
    """Let people in: each is told `admitted` and joins again, straight into the session."""
    require_moderator(actor)
    room.require_open()
    entries = _take(room, req.identities)
    for entry in entries:
        # Admitted for the rest of the session: a reload later goes straight in as well.
        room.state.admitted.add(entry.identity)
        await room.send(_ref(entry), "admitted", Admitted(by=actor.identity))
        await room.timeline("admitted", {**who(entry), "by": actor.identity})
    await tell_moderators(room)
    return acks.ok(admitted=[e.identity for e in entries])


async def deny(room: OwnedRoom, actor: Participant, req: payloads.Deny) -> acks.Ack:
    """Turn people away: each is told `lobby_closed` and their connection closes."""
    require_moderator(actor)
    entries = _take(room, req.identities)
    for entry in entries:
        await room.send(
            _ref(entry), "lobby_closed", LobbyClosed(reason="denied", by=actor.identity)
        )
        await room.close_connection(_ref(entry), "denied")
        await room.timeline("denied", {**who(entry), "by": actor.identity})
    await tell_moderators(room)
    return acks.ok(denied=[e.identity for e in entries])


def _take(room: OwnedRoom, identities: list[str]) -> list[Waiting]:
    found = [room.state.lobby.pop(i) for i in dict.fromkeys(identities) if i in room.state.lobby]
    if not found:
        raise Conflict("not_waiting", "nobody of these is waiting in the lobby")
    room.touch()
    return found


def who(person: Invitee) -> dict[str, object]:
    """How the timeline names someone (as `membership.who`, which imports this module)."""
    return {
        "identity": person.identity,
        "name": person.name,
        "venue": person.venue,
        "role": person.role.value,
    }


def _ref(entry: Waiting) -> SessionRef:
    return SessionRef(entry.node, entry.session)


async def forget(room: OwnedRoom, identity: str, session: str) -> bool:
    """A waiting connection closed (or its wait ran out): it no longer waits."""
    entry = room.state.lobby.get(identity)
    if entry is None or entry.session != session:
        return False
    del room.state.lobby[identity]
    room.touch()
    await tell_moderators(room)
    return True


async def forget_nodes(room: OwnedRoom, gone: set[str], keep: set[str] | None = None) -> None:
    """Forget those who waited on these nodes (dead, or no longer holding them), except
    the sessions in `keep`."""
    stale = [
        w.identity
        for w in room.state.lobby.values()
        if w.node in gone and (keep is None or w.session not in keep)
    ]
    if not stale:
        return
    for identity in stale:
        del room.state.lobby[identity]
    room.touch()
    await tell_moderators(room)


async def close(room: OwnedRoom) -> None:
    """The session ended: everyone waiting is told and their connections close."""
    for entry in list(room.state.lobby.values()):
        await room.send(_ref(entry), "lobby_closed", LobbyClosed(reason="session_ended"))
        await room.close_connection(_ref(entry), "session_ended")
    room.state.lobby.clear()
    room.touch()
