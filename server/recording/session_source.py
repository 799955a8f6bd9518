"""SessionSource: what the session record is derived from, for a recording or a live room.

Attendance, the speaking record, the minutes and the moment index are pure
functions of one of these: the session's definition (venues by level,
agenda with planned speakers), who was invited (the roster), the timeline
entries of the span the record covers, and the state at the span's start
(who was already present, who held the floor, which agenda item was current).

A recording's source comes from its manifest alone, so the record can be
rebuilt after the room is gone; a live room's from Redis (definition, roster,
the whole timeline stream) up to now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from server.rooms.models import Invitee, Room, TimelineEntry

from .models import Manifest, ParticipantEntry, RoomInfo

#: Times in CSV and the minutes are shown in China Standard Time (as the archive's dates).
RECORD_TZ = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class SessionSource:
    """The inputs of the session record (times are seconds since the epoch)."""

    room: RoomInfo
    #: Everyone invited (a token was issued), with their venue and level.
    roster: list[ParticipantEntry]
    #: Timeline entries of the span, in order (their ``ts`` is in milliseconds).
    timeline: list[TimelineEntry]
    started_at: float
    ended_at: float
    #: Identities present when the span started (a recording started mid-session).
    present_at_start: list[str] = field(default_factory=list)
    initial_floor: str | None = None
    initial_agenda_index: int = 0
    #: The recording this record belongs to (None: a live room); offsets seek its player.
    recording_id: str | None = None
    #: Whether the session is still going on (the span ends now, not at a stop).
    live: bool = False

    def offset(self, at: float) -> float:
        """Seconds from the span's start to ``at`` (where the archive player seeks)."""
        return round(max(at - self.started_at, 0.0), 3)

    def who(self, identity: str) -> ParticipantEntry | None:
        """The invitee with this identity, if invited."""
        return next((p for p in self.roster if p.identity == identity), None)


def local_time(at: float | None) -> str:
    """``2026-12-01 09:00:05`` in China Standard Time, or "" for None."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, RECORD_TZ).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(at: float | None) -> str:
    """ISO 8601 with the +08:00 offset, or "" for None."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).astimezone(RECORD_TZ).isoformat(timespec="seconds")


def entry_of(info: RoomInfo, data: dict[str, object]) -> ParticipantEntry | None:
    """A participant entry from a roster invitee or a timeline entry's participant fields."""
    identity, venue_id = data.get("identity"), data.get("venue")
    if not isinstance(identity, str) or not isinstance(venue_id, str):
        return None
    venue = next((v for v in info.venues if v.id == venue_id), None)
    return ParticipantEntry(
        identity=identity,
        name=str(data.get("name") or identity),
        role=str(data.get("role") or "member"),
        venue=venue_id,
        venue_name=venue.name if venue else venue_id,
        level=venue.level if venue else None,
    )


def apply_renames(
    entries: Iterable[ParticipantEntry], timeline: Iterable[TimelineEntry]
) -> list[ParticipantEntry]:
    """The entries under the names a host last gave them (`renamed` in the timeline)."""
    names: dict[str, str] = {}
    for entry in timeline:
        identity, name = entry.data.get("identity"), entry.data.get("name")
        if entry.type == "renamed" and isinstance(identity, str) and isinstance(name, str):
            names[identity] = name
    return [
        e.model_copy(update={"name": names[e.identity]}) if e.identity in names else e
        for e in entries
    ]


def _roster_entries(info: RoomInfo, roster: list[Invitee]) -> list[ParticipantEntry]:
    entries = (entry_of(info, invitee.model_dump(mode="json")) for invitee in roster)
    return [e for e in entries if e is not None]


def from_manifest(manifest: Manifest) -> SessionSource:
    """The source of a recording's record: its manifest alone.

    Manifests written before the roster was kept name only those who took part;
    then nobody can be listed absent.
    """
    roster = list(manifest.roster) or list(manifest.participants)
    known = {p.identity for p in roster}
    roster += [p for p in manifest.participants if p.identity not in known]
    present = list(manifest.present_at_start)
    if not present and not manifest.roster:
        present = _inferred_present_at_start(manifest)
    return SessionSource(
        room=manifest.room,
        roster=apply_renames(roster, manifest.timeline),
        timeline=list(manifest.timeline),
        started_at=manifest.started_at,
        ended_at=manifest.stopped_at or manifest.started_at + manifest.duration,
        present_at_start=present,
        initial_floor=manifest.initial_floor,
        initial_agenda_index=manifest.initial_agenda_index,
        recording_id=manifest.id,
    )


def _inferred_present_at_start(manifest: Manifest) -> list[str]:
    """For manifests without ``present_at_start``: those whose first event is not a join."""
    first: dict[str, str] = {}
    for entry in manifest.timeline:
        identity = entry.data.get("identity")
        if entry.type in ("joined", "left") and isinstance(identity, str):
            first.setdefault(identity, entry.type)
    return [p.identity for p in manifest.participants if first.get(p.identity) != "joined"]


def from_live_room(
    room: Room, roster: list[Invitee], timeline: list[TimelineEntry], now: float
) -> SessionSource:
    """The source of a live room's record: everything since the room was created, until now."""
    info = RoomInfo.of(room)
    started = timeline[0].ts / 1000 if timeline else now
    return SessionSource(
        room=info,
        roster=apply_renames(_roster_entries(info, roster), timeline),
        timeline=timeline,
        started_at=min(started, now),
        ended_at=now,
        live=True,
    )
