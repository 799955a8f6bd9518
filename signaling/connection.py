"""Connection: one Socket.IO connection's life as a state machine.

    connected ──join──► joining ──ok──► joined ──leave──► left
        │                 │  └─refused─► connected        │
        └──────────────── └──────────── close ◄───────────┘ ──► closed

Each step happens once and only through `move`, which refuses any other
transition: a connection cannot join twice, cannot come back after it left,
and a close during a join is seen by the join when its answer comes (so the
participant it created is removed at once, never left behind as a ghost).
"""

from __future__ import annotations

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
    LEFT = "left"
    CLOSED = "closed"


_ALLOWED: dict[SocketState, frozenset[SocketState]] = {
    SocketState.CONNECTED: frozenset({SocketState.JOINING, SocketState.CLOSED}),
    SocketState.JOINING: frozenset({SocketState.JOINED, SocketState.CONNECTED, SocketState.CLOSED}),
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
