"""REST request and response bodies that are not domain models themselves."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from server.rooms.models import (
    DisplayName,
    Identity,
    Invitation,
    Invitee,
    LiveState,
    Participant,
    Role,
    Room,
    Slug,
    Strict,
)
from server.rooms.tokens import MAX_TOKEN_LENGTH
from server.state.nodes import NodeInfo

#: Largest request body the API accepts.
MAX_BODY_BYTES = 64 * 1024


class TokenRequest(Invitee):
    """Issue a join token for one participant of a room."""

    #: Validity in seconds (default: the server's token TTL; at most 30 days).
    ttl_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] | None = None
    #: Change the role or venue of an identity invited before (otherwise that is a 409).
    replace: bool = False


class TokenResponse(Strict):
    """A signed join token and the browser link that uses it."""

    token: str
    url: str
    expires_at: int


class RoomDetail(Strict):
    """A room's definition plus its live state, who is present and who is invited."""

    room: Room
    live: LiveState
    participants: list[Participant]
    roster: list[Invitee]
    #: The node that owns the room (its actor and media), while one does.
    media_node: str | None = None
    #: The last join link issued to each invitee, with its expiry.
    invitations: list[Invitation] = Field(default_factory=list)


class JoinCheckRequest(Strict):
    """A join link's token, checked before the device check."""

    token: Annotated[str, Field(max_length=MAX_TOKEN_LENGTH)]


class JoinCheck(Strict):
    """What a valid join link admits to: the token's own claims, and what its holder sees
    on entering (the session's title and state). Nothing is said about any other session."""

    room_id: Slug
    identity: Identity
    name: DisplayName
    role: Role
    venue: Slug
    venue_name: str
    #: Seconds since the epoch.
    expires_at: int
    title: str
    scheduled_start: str
    status: str
    #: The session is being recorded now.
    recording: bool
    #: The host locked the session.
    locked: bool
    #: Whether this link's holder will wait in the lobby until a host lets them in.
    lobby: bool
    #: The agenda items' titles (a member may submit a suggestion on one before entering).
    agenda: list[str] = Field(default_factory=list, max_length=100)


class RoomSummary(Strict):
    """One row of the room list."""

    room: Room
    live: LiveState
    participant_count: int


class RoomList(Strict):
    """All rooms, newest first."""

    rooms: list[RoomSummary]


class NodeList(Strict):
    """The live nodes of the deployment."""

    nodes: list[NodeInfo]


class Health(Strict):
    """Liveness of this node (always 200), and whether its Redis answers."""

    #: "ok", or "degraded" while Redis does not answer.
    status: str
    node: str
    #: "ok" or "unreachable".
    redis: str


class ReadyStatus(Strict):
    """Readiness of this node: 200 "ready", or 503 "not_ready" with the reasons."""

    status: str
    node: str
    #: "ok" or "unreachable".
    redis: str
    draining: bool
    #: Why the node is not ready: "redis_unreachable", "draining", "failed".
    reasons: list[str]


class ErrorDetail(Strict):
    """Machine-readable code and human-readable message."""

    code: str
    message: str


class ErrorBody(Strict):
    """The body of every error response."""

    error: ErrorDetail
