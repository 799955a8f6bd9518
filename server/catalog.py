"""RoomCatalog: the organizer's side of sessions — creating, listing, deleting, inviting.

Definitions and rosters are written here, on whichever node serves the admin
API; a session's live state is only read (its owner writes it), and deleting
a session goes through its owner so everyone in it is told.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from server.cluster.router import RoomRouter
from server.rooms import acks
from server.rooms.admission import check_not_excluded, check_token_room
from server.rooms.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from server.rooms.models import (
    Invitation,
    Invitee,
    Participant,
    PersistedRoom,
    Role,
    Room,
    RoomSpec,
)
from server.rooms.tokens import JoinClaims, TokenSigner
from server.state.leases import RoomLeases
from server.state.nodes import NodeInfo
from server.state.store import RedisStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomView:
    """A session as the admin API shows it."""

    room: Room
    state: PersistedRoom
    owner: str | None

    @property
    def participants(self) -> list[Participant]:
        """Who is in it, as its owner last wrote."""
        return self.state.participants


class RoomCatalog:
    """Sessions as organizers see them."""

    def __init__(
        self, store: RedisStore, signer: TokenSigner, router: RoomRouter, leases: RoomLeases
    ) -> None:
        self.store = store
        self.signer = signer
        self.router = router
        self.leases = leases

    async def create_room(self, spec: RoomSpec) -> Room:
        """Create a session; the id is the spec's or a fresh one. Conflict if the id is taken."""
        room_id = spec.id or f"room-{secrets.token_hex(5)}"
        room = Room(
            **{**spec.model_dump(), "id": room_id},
            created_at=datetime.now(UTC),
            incarnation=secrets.token_hex(8),
        )
        if not await self.store.create_room(room):
            raise Conflict("room_exists", f"a room with id {room_id!r} already exists")
        logger.info("room %s created: %s", room.id, room.title)
        return room

    async def get_room(self, room_id: str) -> Room:
        """The room's definition; NotFound otherwise."""
        room = await self.store.get_room(room_id)
        if room is None:
            raise NotFound("room_not_found", f"room {room_id!r} does not exist")
        return room

    async def view(self, room_id: str) -> RoomView:
        """A session with its live state (from its owner, or as last written) and its owner."""
        room = await self.get_room(room_id)
        owner = await self.leases.holder(room_id)
        if owner is not None:
            # Briefly: during a failover the last written state is good enough.
            ack = await self.router.admin(room_id, "state", budget=1.0)
            if acks.is_ok(ack):
                state = PersistedRoom.model_validate(ack["state"])
                return RoomView(room=room, state=_current(room, state), owner=owner)
        return RoomView(
            room=room, state=_current(room, await self.store.snapshot(room_id)), owner=owner
        )

    async def views(self) -> list[RoomView]:
        """Every session, newest first."""
        rooms = await self.store.list_rooms()
        snapshots = await self.store.snapshots([r.id for r in rooms])
        owners = await self.leases.holders([r.id for r in rooms])
        return [
            RoomView(room=r, state=_current(r, snapshots.get(r.id)), owner=owners.get(r.id))
            for r in rooms
        ]

    async def delete_room(self, room_id: str) -> None:
        """Delete a session; anyone still connected is told the session ended and disconnected."""
        await self.get_room(room_id)
        ack = await self.router.admin(room_id, "delete", "api")
        if ack.get("error", {}).get("code") != "room_not_found":
            acks.raise_for(ack)

    async def issue_token(
        self,
        room_id: str,
        invitee: Invitee,
        ttl_seconds: int,
        *,
        base_url: str | None = None,
        replace: bool = False,
    ) -> tuple[str, JoinClaims]:
        """Sign a join token for an invitee of an existing venue; hosts sit at the main venue.

        An identity already invited with another role or venue is refused
        (`identity_taken`, 409) unless `replace`: a typo must not turn the host into a
        member. With `base_url`, the join link is kept for the organizer page.
        """
        room = await self.get_room(room_id)
        venue = room.venue(invitee.venue)
        if venue is None:
            raise InvalidRequest(
                "unknown_venue", f"room {room_id!r} has no venue {invitee.venue!r}"
            )
        if invitee.role is Role.HOST and not venue.main:
            raise InvalidRequest(
                "host_not_at_main_venue",
                f"the host sits at the main venue {room.main_venue.id!r}",
            )
        token, claims = self.signer.issue(room_id, invitee, ttl_seconds, room.incarnation)
        if invitee.role is Role.VIEWER:
            # A viewer watches the broadcast only: not on the roster participants see.
            if room.broadcast != "token":
                raise InvalidRequest(
                    "broadcast_not_token", "viewer tokens are for rooms with broadcast: token"
                )
            return token, claims
        if invitee.role is Role.OPERATOR:
            # Technical staff watch this session's control room: not on its roster either.
            return token, claims
        invitation = None
        if base_url is not None:
            invitation = Invitation(
                identity=invitee.identity,
                url=join_url(base_url, token),
                expires_at=claims.expires_at,
                issued_at=int(time.time()),
            )
        clash = await self.store.add_invitee(room_id, invitee, invitation, replace=replace)
        if clash is not None:
            raise Conflict(
                "identity_taken",
                f"{invitee.identity!r} is already invited as {clash.role.value} at venue "
                f"{clash.venue!r} ({clash.name}); send replace: true to change that",
            )
        return token, claims

    async def check_token(
        self, claims: JoinClaims, *, fresh: bool = False, for_session: bool = True
    ) -> Room:
        """Refuse a token whose room is gone or re-created, whose session ended, or
        whose holder was removed; `for_session`, one that does not enter the session
        (a viewer's or an operator's).

        By the last written state, unless `fresh` (then the owner is asked); at join
        the owner checks again, and the rest (lock, capacity), on its current state.
        """
        room, invited, snapshot = await self.store.admission(claims.room, claims.invitee.identity)
        if room is None:
            raise NotFound("room_not_found", "this session no longer exists")
        check_token_room(room, claims.incarnation, claims.invitee, for_session=for_session)
        if invited is not None and (invited.role, invited.venue) != (
            claims.invitee.role,
            claims.invitee.venue,
        ):
            # The organizer changed this person's role or venue: links made before are void.
            raise Unauthorized(
                "token_replaced", "this link was replaced by a newer invitation; use the latest"
            )
        state = (await self.view(room.id)).state if fresh else _current(room, snapshot)
        check_not_excluded(state.live, claims.invitee, state.banned)
        return room

    async def written_state(self, room: Room) -> PersistedRoom:
        """The session's live state as its owner last wrote it."""
        return _current(room, await self.store.snapshot(room.id))

    async def owner_url(self, room_id: str, nodes: list[NodeInfo]) -> str | None:
        """The URL of the node owning the session now, if one does."""
        owner = await self.leases.holder(room_id)
        return next((n.url for n in nodes if n.id == owner), None)


def join_url(base_url: str, token: str) -> str:
    """The browser link that joins with `token` (any node serves any session)."""
    return f"{base_url}/join?token={token}"


def _current(room: Room, persisted: PersistedRoom | None) -> PersistedRoom:
    """The written state if it is of this incarnation of the room, else a fresh one."""
    if persisted is None or persisted.incarnation != room.incarnation:
        return PersistedRoom(incarnation=room.incarnation)
    return persisted
