"""REST request and response bodies that are not domain models themselves."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from server.rooms.models import Invitee, LiveState, Participant, Room, Strict
from server.state.nodes import NodeInfo

#: Largest request body the API accepts.
MAX_BODY_BYTES = 64 * 1024


class TokenRequest(Invitee):
    """Issue a join token for one participant of a room."""

    #: Validity in seconds (default: the server's token TTL; at most 30 days).
    ttl_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] | None = None


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
