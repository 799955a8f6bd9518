"""The messages nodes exchange on the bus, one schema each.

Edges send requests to a room's owner and get a reply with the ack; owners send
broadcasts to the room's channel and per-connection events and closes to the
node holding the connection. All are JSON; `parse` reads any of them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from server.rooms.models import Caller, Participant
from server.rooms.payloads import CallInOp, VenueQuality
from server.rooms.server_events import DepartureReason


class Message(BaseModel):
    """Base of bus messages (nodes trust each other; unknown fields are still refused)."""

    model_config = ConfigDict(extra="forbid")


class RequestBase(Message):
    """A request to a room's owner; the reply goes to `reply_to`'s node channel."""

    id: str
    reply_to: str
    room: str
    #: Wall-clock time (s) after which the sender no longer waits: applying it then would
    #: surprise a client that was told it failed (0: no expiry).
    expires_at: float = 0.0


class JoinRequest(RequestBase):
    """A connection asks to join the room."""

    kind: Literal["join"] = "join"
    caller: Caller
    incarnation: str


class EventRequest(RequestBase):
    """A joined participant's event (the payload as validated by the edge)."""

    kind: Literal["event"] = "event"
    caller: Caller
    event: str
    payload: dict[str, Any]


class LeaveRequest(RequestBase):
    """A connection left or closed."""

    kind: Literal["leave"] = "leave"
    identity: str
    session: str
    reason: DepartureReason


class ReconcileRequest(RequestBase):
    """The sender lists every socket it holds in the room (joined, and still joining)."""

    kind: Literal["reconcile"] = "reconcile"
    node: str
    sessions: list[Caller]
    joining: list[str] = []


class PingRequest(RequestBase):
    """Does the receiver own the room? (asked before taking over a room without a lease)"""

    kind: Literal["ping"] = "ping"


#: What an admin request asks of a room's owner: the REST API's and the control room's.
AdminAction = Literal[
    "state",
    "delete",
    "start_recording",
    "stop_recording",
    "media_stats",
    "reconnect",
    "pin",
    "venue_quality",
]


class AdminRequest(RequestBase):
    """An organizer's action on the room through the REST API of any node."""

    kind: Literal["admin"] = "admin"
    action: AdminAction
    by: str = ""
    #: The participant an action is about (`reconnect`, `pin`; "" unpins), or the venue
    #: (`venue_quality`).
    target: str = ""
    #: The caps `venue_quality` sets (absent: lift them).
    venue_quality: VenueQuality | None = None


class TakeRequest(RequestBase):
    """A draining owner asks the receiver to take the room over now."""

    kind: Literal["take"] = "take"


class GalleryPostRequest(RequestBase):
    """A live broadcast's viewer posts to the gallery through another node (its edge checked
    access, the body and the address's rate; `poster` is who the edge says posts)."""

    kind: Literal["gallery_post"] = "gallery_post"
    poster: Participant
    post: dict[str, Any]


class CallInBusRequest(RequestBase):
    """A live broadcast's viewer asks to speak, or asks about that request, through
    another node (its edge checked access, the body and the address's rate)."""

    kind: Literal["call_in"] = "call_in"
    op: CallInOp
    #: Who asks (`ask`): the viewer token's subject, or the id of the client address.
    viewer: str = ""
    #: The SHA-256 (hex) of the request's handle.
    handle_digest: str
    #: The request (`ask`): a `CallInAsk`.
    ask: dict[str, Any] | None = None


Request = Annotated[
    JoinRequest
    | EventRequest
    | LeaveRequest
    | ReconcileRequest
    | PingRequest
    | AdminRequest
    | TakeRequest
    | GalleryPostRequest
    | CallInBusRequest,
    Field(discriminator="kind"),
]


class Reply(Message):
    """The answer to a request (an ack, as the client would receive it)."""

    type: Literal["reply"] = "reply"
    id: str
    ack: dict[str, Any]


class Envelope(Message):
    """A request travelling to a node."""

    type: Literal["request"] = "request"
    request: Request


class RoomBroadcast(Message):
    """A room's event for every joined socket, from its owner, numbered in the room."""

    type: Literal["room_event"] = "room_event"
    room: str
    owner: str
    seq: int
    event: str
    payload: dict[str, Any]


class SessionEvent(Message):
    """An event for one socket held by the receiving node."""

    type: Literal["session_event"] = "session_event"
    room: str
    session: str
    event: str
    payload: dict[str, Any]


class SessionClose(Message):
    """Close one socket held by the receiving node."""

    type: Literal["close"] = "close"
    room: str
    session: str
    reason: str


BusMessage = Annotated[
    Envelope | Reply | RoomBroadcast | SessionEvent | SessionClose,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[BusMessage] = TypeAdapter(BusMessage)


def parse(data: bytes | str) -> BusMessage:
    """Read a bus message (ValidationError if it is not one)."""
    return _ADAPTER.validate_json(data)
