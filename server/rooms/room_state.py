"""RoomState: a room's live state as its owner keeps it in memory, and its persisted form.

The owner changes it only from its actor (one change at a time, in arrival
order), so it needs no locks; `persisted()` is what is written behind to Redis
and `from_persisted()` is how a successor picks the room up.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from server.rooms.models import (
    CallInRecord,
    GalleryItem,
    LiveState,
    Participant,
    PersistedRoom,
    Room,
    Suggestion,
    TimelineEntry,
    Waiting,
)

#: Timeline entries kept in memory for join snapshots.
SNAPSHOT_TIMELINE_LENGTH = 200


class TimelineClock:
    """Assigns timeline entry ids `<ms>-<n>`: increasing, like the ids Redis would assign.

    The owner assigns them itself, so an entry keeps the id clients saw in its ack
    and broadcast when it is written behind; a successor continues after the last
    id in the stream even if its clock is behind the old owner's.
    """

    def __init__(self, last_id: str | None = None) -> None:
        self._ms, self._n = _parse(last_id) if last_id else (0, -1)

    def next_id(self, now_ms: int | None = None) -> str:
        """The next id, never smaller than one already given."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if now > self._ms:
            self._ms, self._n = now, 0
        else:
            self._n += 1
        return f"{self._ms}-{self._n}"


def _parse(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


@dataclass
class RoomState:
    """Everything an owner knows about one room besides its media."""

    room: Room
    live: LiveState = field(default_factory=LiveState)
    #: Participants by identity, in joining order.
    participants: dict[str, Participant] = field(default_factory=dict)
    banned: set[str] = field(default_factory=set)
    admitted: set[str] = field(default_factory=set)
    #: Display names a host changed, by identity.
    renamed: dict[str, str] = field(default_factory=dict)
    #: Who waits in the lobby, by identity, in arrival order.
    lobby: dict[str, Waiting] = field(default_factory=dict)
    #: The last timeline entries (the full timeline is the Redis stream).
    timeline: deque[TimelineEntry] = field(
        default_factory=lambda: deque(maxlen=SNAPSHOT_TIMELINE_LENGTH)
    )
    #: Broadcasts sent so far; every broadcast carries its number.
    seq: int = 0
    recording_id: str | None = None
    #: The gallery's questions and opinions by id, in the order they were posted.
    gallery: dict[str, GalleryItem] = field(default_factory=dict)
    gallery_on_screen: str | None = None
    gallery_next: int = 1
    #: Members' micro-suggestions by id, in the order they were submitted.
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    suggestion_next: int = 1
    #: Broadcast viewers' requests to speak (call-ins) by id, in the order they asked.
    call_ins: dict[str, CallInRecord] = field(default_factory=dict)
    call_in_next: int = 1
    clock: TimelineClock = field(default_factory=TimelineClock)

    def persisted(self, owner: str, handed_over: bool = False) -> PersistedRoom:
        """The state to write behind, as `owner` holds it."""
        return PersistedRoom(
            incarnation=self.room.incarnation,
            owner=owner,
            handed_over=handed_over,
            seq=self.seq,
            live=self.live,
            participants=list(self.participants.values()),
            banned=sorted(self.banned),
            admitted=sorted(self.admitted),
            renamed=dict(self.renamed),
            lobby=list(self.lobby.values()),
            recording_id=self.recording_id,
            gallery=list(self.gallery.values()),
            gallery_on_screen=self.gallery_on_screen,
            gallery_next=self.gallery_next,
            suggestions=list(self.suggestions.values()),
            suggestion_next=self.suggestion_next,
            call_ins=list(self.call_ins.values()),
            call_in_next=self.call_in_next,
            written_at=time.time(),
        )

    @classmethod
    def from_persisted(
        cls, room: Room, persisted: PersistedRoom | None, timeline: list[TimelineEntry]
    ) -> RoomState:
        """A successor's state: the last snapshot (if it is of this incarnation) and timeline."""
        if persisted is None or persisted.incarnation != room.incarnation:
            persisted = PersistedRoom(incarnation=room.incarnation)
        tail: deque[TimelineEntry] = deque(timeline, maxlen=SNAPSHOT_TIMELINE_LENGTH)
        return cls(
            room=room,
            live=persisted.live,
            participants={p.identity: p for p in persisted.participants},
            banned=set(persisted.banned),
            admitted=set(persisted.admitted),
            renamed=dict(persisted.renamed),
            lobby={w.identity: w for w in persisted.lobby},
            timeline=tail,
            seq=persisted.seq,
            recording_id=persisted.recording_id,
            gallery={item.id: item for item in persisted.gallery},
            gallery_on_screen=persisted.gallery_on_screen,
            gallery_next=persisted.gallery_next,
            suggestions={s.id: s for s in persisted.suggestions},
            suggestion_next=persisted.suggestion_next,
            call_ins={c.id: c for c in persisted.call_ins},
            call_in_next=persisted.call_in_next,
            clock=TimelineClock(timeline[-1].id if timeline else None),
        )
