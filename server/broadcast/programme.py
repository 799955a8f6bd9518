"""The programme: what the broadcast shows now, as the owner node decides and the worker draws.

The owner computes it from the room's state (floor holder, host, agenda item,
the gallery item on screen, pause) and sends it to the worker whenever it
changes; the public part is also written next to the playlist as
``programme.json``, which the /live page polls for its HTML banner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SlotRole = Literal["main", "corner", "audio"]


@dataclass(frozen=True)
class Speaker:
    """Who the banner names: a participant with their venue and its level."""

    identity: str
    name: str
    role: str
    venue_name: str
    level: str | None


@dataclass(frozen=True)
class TrackSlot:
    """One published track the worker receives, numbered by a one-byte slot."""

    slot: int
    kind: str
    codec: str
    identity: str
    use: SlotRole


@dataclass(frozen=True)
class Programme:
    """The broadcast's content now (see the module docstring)."""

    room: str
    title: str
    status: str = "live"
    #: The agenda item now (its title, "" when the agenda is empty) and its index.
    agenda: str = ""
    agenda_index: int = 0
    #: Who is shown large: the floor holder, else a pinned participant, else the host.
    shown: Speaker | None = None
    #: Whether `shown` holds the floor now (the banner says so).
    has_floor: bool = False
    #: The host (in the corner while someone else is shown large).
    host: Speaker | None = None
    #: The approved gallery question or opinion on screen now.
    gallery: str | None = None
    paused: bool = False
    tracks: tuple[TrackSlot, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The whole programme, for the worker."""
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Programme:
        """The programme the node sent (the worker trusts its parent's JSON)."""

        def speaker(value: Any) -> Speaker | None:
            return Speaker(**value) if isinstance(value, dict) else None

        return cls(
            room=str(body.get("room", "")),
            title=str(body.get("title", "")),
            status=str(body.get("status", "live")),
            agenda=str(body.get("agenda", "")),
            agenda_index=int(body.get("agenda_index", 0)),
            shown=speaker(body.get("shown")),
            has_floor=bool(body.get("has_floor", False)),
            host=speaker(body.get("host")),
            gallery=body.get("gallery") if isinstance(body.get("gallery"), str) else None,
            paused=bool(body.get("paused", False)),
            tracks=tuple(TrackSlot(**t) for t in body.get("tracks", ())),
        )

    def public(self) -> dict[str, Any]:
        """What viewers may see (``programme.json``): no identities, no track plumbing."""

        def person(speaker: Speaker | None) -> dict[str, Any] | None:
            if speaker is None:
                return None
            return {"name": speaker.name, "venue": speaker.venue_name, "level": speaker.level}

        return {
            "room": self.room,
            "title": self.title,
            "status": self.status,
            "paused": self.paused,
            "agenda": self.agenda,
            "agenda_index": self.agenda_index,
            "speaker": person(self.shown),
            "has_floor": self.has_floor,
            "host": person(self.host),
            "gallery": self.gallery,
        }

    def slot(self, use: SlotRole) -> TrackSlot | None:
        """The first track used as `use` (main or corner video)."""
        return next((t for t in self.tracks if t.use == use), None)
