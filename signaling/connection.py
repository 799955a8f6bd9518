"""Connection: one Socket.IO connection's life as a state machine.

    connected ──join──► joining ──ok──► joined ──leave──► left
        │                 │  ├─refused─► connected        │
        │                 │  └─in_lobby─► waiting ──join──┘ (after `admitted`)
        └──────────────── └──────────── close ◄───────────┘ ──► closed

Each step happens once and only through `move`, which refuses any other
transition: a connection cannot join twice, cannot come back after it left,
and a close during a join is seen by the join when its answer comes (so the
participant it created is removed at once, never left behind as a ghost).
A connection waiting in the lobby is connected but not joined: it gets no room
events, only the lobby's (`admitted`, `lobby_closed`); the never-joined timeout
does not close it, its own lobby wait bound does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field

from server.ratelimit import TokenBucket
from server.rooms.models import Caller
from server.rooms.tokens import JoinClaims

logger = logging.getLogger(__name__)


class SocketState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTED = "connected"
    JOINING = "joining"
    JOINED = "joined"
    #: In the lobby: connected, not joined, waiting for a host to let it in.
    WAITING = "waiting"
    LEFT = "left"
    CLOSED = "closed"


_ALLOWED: dict[SocketState, frozenset[SocketState]] = {
    SocketState.CONNECTED: frozenset({SocketState.JOINING, SocketState.CLOSED}),
    SocketState.JOINING: frozenset(
        {SocketState.JOINED, SocketState.CONNECTED, SocketState.WAITING, SocketState.CLOSED}
    ),
    SocketState.WAITING: frozenset({SocketState.JOINING, SocketState.CLOSED}),
    SocketState.JOINED: frozenset({SocketState.LEFT, SocketState.CLOSED}),
    SocketState.LEFT: frozenset({SocketState.CLOSED}),
    SocketState.CLOSED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A step the connection's state does not allow."""


@dataclass
class Connection:
    """What this node knows about one `/room` connection."""

    claims: JoinClaims
    caller: Caller
    limits: TokenBucket
    state: SocketState = SocketState.CONNECTED
    #: The node is draining: the close is not a departure (the client reconnects elsewhere).
    handed_off: bool = field(default=False)
    #: Closes the connection when it has waited in the lobby too long.
    lobby_timer: asyncio.TimerHandle | None = field(default=None)

    @property
    def room_id(self) -> str:
        """The room the token admits this connection to."""
        return self.claims.room

    @property
    def in_room(self) -> bool:
        """Whether the room's events reach this connection (joining or joined)."""
        return self.state in (SocketState.JOINING, SocketState.JOINED)

    def move(self, new: SocketState) -> SocketState:
        """Change state; returns the old one. InvalidTransition if the step is not allowed."""
        old = self.state
        if new not in _ALLOWED[old]:
            raise InvalidTransition(f"{old.value} -> {new.value}")
        self.state = new
        logger.debug(
            "%s %s: %s -> %s", self.caller.identity, self.caller.session, old.value, new.value
        )
        return old
