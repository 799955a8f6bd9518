"""What a room's owner needs from the layers around it, as small interfaces.

The domain calls these; `server.cluster`, `server.state` and `server.recording`
implement them, and `server.app` wires them together. The domain therefore
imports none of those packages (no cycles, and importing the domain does not
import the recording stack).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from server.media import MediaRoom
from server.rooms.models import Participant, Room, TimelineEntry


@dataclass(frozen=True)
class SessionRef:
    """One signaling connection: the node holding the socket and its session id."""

    node: str
    session: str

    @classmethod
    def of(cls, participant: Participant) -> SessionRef:
        """The connection a participant is on."""
        return cls(participant.node, participant.session)


class RoomDelivery(Protocol):
    """Outbound events of one owner to the sockets of its rooms, on any node."""

    async def broadcast(
        self, room_id: str, seq: int, event: str, payload: BaseModel, nodes: frozenset[str]
    ) -> None:
        """Send `event` to every joined socket of the room; `nodes` hold its participants."""

    async def send(self, room_id: str, to: SessionRef, event: str, payload: BaseModel) -> None:
        """Send `event` to one connection."""

    async def close(self, room_id: str, to: SessionRef, reason: str) -> None:
        """Close one connection (after any event telling it why)."""


class StateWriter(Protocol):
    """Writes one room's state behind to Redis, fenced by the room's lease."""

    def changed(self) -> None:
        """The state changed: write a new snapshot soon."""

    def append(self, entry: TimelineEntry) -> None:
        """Add an entry to the timeline stream (in order, with its id)."""

    def batch(self) -> AbstractContextManager[None]:
        """Changes made inside (one command, across its awaits) go in one write."""

    def settled(self) -> asyncio.Future[None]:
        """Done once everything changed so far is written (at once while Redis is away)."""

    async def flush(self, timeout: float) -> bool:
        """Wait until everything so far is written; False if that did not happen in time."""

    async def close(self) -> None:
        """Stop writing (after a final flush, if the caller wanted one)."""


@dataclass(frozen=True)
class RecordingContext:
    """What a recording needs to know about the session when it starts or resumes."""

    floor: str | None
    agenda_index: int
    participants: list[Participant]


@dataclass(frozen=True)
class RecordingUpdate:
    """A recording's state as the room reports it (timeline, live flag, `recording` event)."""

    id: str
    state: str
    started_by: str
    error: str | None
    complete: bool
    #: 1 for the first part; a recording resumed after its writer went away has more.
    part: int
    resumed: bool
    #: What clients receive in the `recording` event.
    payload: BaseModel


class Recorder(Protocol):
    """The recording service, as a room's owner uses it."""

    def is_recording(self, room_id: str) -> bool:
        """Whether this node is recording the room now."""

    async def start(
        self, room: Room, media_room: MediaRoom, started_by: str, context: RecordingContext
    ) -> RecordingUpdate:
        """Start recording the room's media."""

    async def resume(
        self,
        recording_id: str,
        room: Room,
        media_room: MediaRoom,
        context: RecordingContext,
        *,
        dead_writer: str | None = None,
    ) -> RecordingUpdate:
        """Continue a recording whose previous writer went away, in a new part.

        `dead_writer`: the node known to be dead (its lease is taken over at once).
        Refusals: `recording_elsewhere` (a writer still holds it: try again soon),
        `not_resumable` (it ended: start a new recording).
        """

    async def suspend(self, room_id: str) -> None:
        """Close this node's part cleanly so a successor can resume (hand-over)."""

    async def stop(self, room_id: str) -> RecordingUpdate:
        """Stop recording: files closed, manifest written, combined video queued."""
