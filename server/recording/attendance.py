"""Attendance (签到): who of those invited came, from which venue and level, and for how long.

A pure function of a :class:`SessionSource`: presence starts at a ``joined``
entry (or at the span's start for those already present) and ends at a
``left`` entry, at ``session_ended``, or at the span's end. A ``joined`` of
someone already present is a reconnection that replaced the old connection
(the room writes no ``left`` for it); a join after a leave is a reconnection
too. Invitees who never joined are absent.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from server.rooms.models import Level

from .models import ParticipantEntry
from .session_source import SessionSource, entry_of, iso_time

LEVEL_ORDER = [Level.NATIONAL, Level.PROVINCIAL, Level.CITY, Level.COUNTY]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttendanceEntry(_Model):
    """One participant's attendance (times in seconds since the epoch)."""

    identity: str
    name: str
    role: str
    #: False for someone who joined without being on the roster (a roster not kept).
    invited: bool = True
    first_join: float | None = None
    last_leave: float | None = None
    #: Still connected when the span ended (``last_leave`` is then their last leave, if any).
    present_at_end: bool = False
    present_seconds: float = 0.0
    #: Joins after the first (after a leave, or replacing a dropped connection).
    reconnections: int = 0
    absent: bool = True
    #: Seconds from the span's start to the first join (the archive player seeks there).
    first_join_offset: float | None = None


class VenueAttendance(_Model):
    """A venue and its participants, with counts."""

    id: str
    name: str
    level: Level | None
    main: bool = False
    invited: int = 0
    attended: int = 0
    absent: int = 0
    participants: list[AttendanceEntry] = Field(default_factory=list)


class LevelAttendance(_Model):
    """The venues of one administrative level, with totals."""

    level: Level | None
    invited: int = 0
    attended: int = 0
    absent: int = 0
    venues: list[VenueAttendance] = Field(default_factory=list)


class Attendance(_Model):
    """The attendance of one session span (a recording, or a live room until now)."""

    room_id: str
    title: str
    recording_id: str | None
    live: bool
    started_at: float
    ended_at: float
    invited: int
    attended: int
    absent: int
    levels: list[LevelAttendance]


@dataclass
class _Presence:
    since: float | None = None
    first_join: float | None = None
    last_leave: float | None = None
    seconds: float = 0.0
    joins: int = 0

    def join(self, at: float) -> None:
        self.joins += 1
        if self.first_join is None:
            self.first_join = at
        if self.since is None:
            self.since = at

    def leave(self, at: float) -> None:
        if self.since is not None:
            self.seconds += max(at - self.since, 0.0)
            self.since = None
            self.last_leave = at


def presence(source: SessionSource) -> dict[str, _Presence]:
    """Each identity's presence over the span, from the timeline."""
    found: dict[str, _Presence] = {}
    for present in source.present_at_start:
        found.setdefault(present, _Presence()).join(source.started_at)
    for entry in source.timeline:
        at = entry.ts / 1000
        identity = entry.data.get("identity")
        if entry.type == "joined" and isinstance(identity, str):
            found.setdefault(identity, _Presence()).join(at)
        elif entry.type == "left" and isinstance(identity, str) and identity in found:
            found[identity].leave(at)
        elif entry.type == "session_ended":
            for each in found.values():
                each.leave(at)
    return found


def attendance(source: SessionSource) -> Attendance:
    """The attendance of the span, by level (top down), venue (as defined), then joining order."""
    presences = presence(source)
    people: list[ParticipantEntry] = list(source.roster)
    listed = {p.identity for p in people}
    # Someone who joined without being on the roster still attended.
    for entry in source.timeline:
        identity = entry.data.get("identity")
        if entry.type == "joined" and isinstance(identity, str) and identity not in listed:
            extra = entry_of(source.room, entry.data)
            if extra is not None:
                people.append(extra)
                listed.add(identity)
    invited = {p.identity for p in source.roster}

    by_venue: dict[str, list[AttendanceEntry]] = {}
    for person in people:
        seen = presences.get(person.identity)
        row = AttendanceEntry(
            identity=person.identity,
            name=person.name,
            role=person.role,
            invited=person.identity in invited,
        )
        if seen is not None and seen.joins:
            at_end = seen.since is not None
            if at_end:
                seen.leave(source.ended_at)
                seen.last_leave = None
            row = row.model_copy(
                update={
                    "first_join": seen.first_join,
                    "last_leave": seen.last_leave,
                    "present_at_end": at_end,
                    "present_seconds": round(seen.seconds, 3),
                    "reconnections": seen.joins - 1,
                    "absent": False,
                    "first_join_offset": source.offset(seen.first_join or source.started_at),
                }
            )
        by_venue.setdefault(person.venue, []).append(row)

    rows = [
        _venue(v.id, v.name, v.level, v.main, by_venue.pop(v.id, [])) for v in source.room.venues
    ]
    levels: list[LevelAttendance] = []
    for level in LEVEL_ORDER:
        at_level = [r for r in rows if r.level == level]
        if at_level:
            levels.append(_level(level, at_level))
    if by_venue:  # venues not in the definition (never, unless it changed)
        others = [_venue(vid, vid, None, False, entries) for vid, entries in by_venue.items()]
        levels.append(_level(None, others))
    return Attendance(
        room_id=source.room.id,
        title=source.room.title,
        recording_id=source.recording_id,
        live=source.live,
        started_at=source.started_at,
        ended_at=source.ended_at,
        invited=sum(level.invited for level in levels),
        attended=sum(level.attended for level in levels),
        absent=sum(level.absent for level in levels),
        levels=levels,
    )


def _venue(
    venue_id: str, name: str, level: Level | None, main: bool, rows: list[AttendanceEntry]
) -> VenueAttendance:
    return VenueAttendance(
        id=venue_id,
        name=name,
        level=level,
        main=main,
        invited=sum(1 for r in rows if r.invited),
        attended=sum(1 for r in rows if not r.absent),
        absent=sum(1 for r in rows if r.absent),
        participants=rows,
    )


def _level(level: Level | None, venues: list[VenueAttendance]) -> LevelAttendance:
    return LevelAttendance(
        level=level,
        invited=sum(v.invited for v in venues),
        attended=sum(v.attended for v in venues),
        absent=sum(v.absent for v in venues),
        venues=venues,
    )


CSV_COLUMNS = [
    "level",
    "venue",
    "identity",
    "name",
    "role",
    "status",
    "first_join",
    "last_leave",
    "present_seconds",
    "reconnections",
    "invited",
]


def attendance_csv(record: Attendance) -> str:
    """One row per participant (UTF-8 with a BOM, so Excel shows the Chinese names)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for level in record.levels:
        for venue in level.venues:
            for row in venue.participants:
                status = "absent" if row.absent else "present" if row.present_at_end else "left"
                writer.writerow(
                    [
                        level.level.value if level.level else "",
                        _safe_cell(venue.name),
                        row.identity,
                        _safe_cell(row.name),
                        row.role,
                        status,
                        iso_time(row.first_join),
                        iso_time(row.last_leave),
                        f"{row.present_seconds:.0f}",
                        row.reconnections,
                        "yes" if row.invited else "no",
                    ]
                )
    return out.getvalue()


def _safe_cell(text: str) -> str:
    """Neutralise spreadsheet formulas (a name starting with = + - @)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
