"""The speaking record: per agenda item, who spoke when, for how long, against which limit.

A pure function of a :class:`SessionSource`. A speech starts at a
``floor_granted`` entry (or at the span's start for whoever held the floor
then) and ends at the first of: ``floor_revoked`` (by the host: ``revoked``;
by the speaker: ``yielded``), ``floor_expired`` (the time limit ran out:
``expired``), a grant to someone else (``replaced``), the speaker's ``left``
(``left``), ``session_ended``, or the span's end (``recording_end``, or
``speaking`` in a live room).

Overrun: the server ends a timed grant at its limit, so a speaker can only run
over when the host gives them the floor again to finish — a grant to the
speaker who holds the floor, or whose time just expired with nobody speaking
since, in the same agenda item within :data:`EXTENSION_WINDOW` seconds. That
grant continues the same speech: its duration is the time the floor was held
in all its grants, and the overrun is how far that exceeds the first grant's
limit (not counting how late the expiry timer fired: a turn the timer ended
has no overrun).

A speech belongs to the agenda item current when it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from server.rooms.models import Level

from .session_source import SessionSource

#: A grant this soon after the same speaker's time expired is an extension, not a new speech.
EXTENSION_WINDOW = 120.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Speech(_Model):
    """One turn at the floor (times in seconds since the epoch)."""

    identity: str
    name: str
    venue: str
    venue_name: str
    level: Level | None = None
    agenda_index: int
    start: float
    end: float
    #: Seconds the speaker held the floor (pauses between an expiry and an extension excluded).
    duration: float
    #: The limit the host set when first granting the floor (None: unlimited).
    time_limit_seconds: int | None = None
    overrun_seconds: float = 0.0
    #: revoked, yielded, expired, replaced, left, session_ended, recording_end, speaking.
    ended_by: str
    #: Floor grants this speech took (more than one: the host extended it).
    grants: int = 1
    #: Seconds from the record's start (the archive player seeks there).
    offset: float
    #: The timeline entry that started it (None: the speaker held the floor at the start).
    entry_id: str | None = None
    #: A member of the public the host brought on stage (连线; `stage_started` entries).
    on_stage: bool = False


class PlannedSpeaker(_Model):
    """A planned speaker of an agenda item (who did not speak on it)."""

    identity: str
    name: str


class AgendaItemRecord(_Model):
    """One agenda item: when it was current, its speeches, who was planned but did not speak."""

    index: int
    title: str
    #: First time it became current, last time it stopped being current (None: never reached).
    start: float | None = None
    end: float | None = None
    seconds: float = 0.0
    planned_minutes: int | None = None
    overrun_seconds: float = 0.0
    offset: float | None = None
    speeches: list[Speech] = Field(default_factory=list)
    planned_speakers: list[str] = Field(default_factory=list)
    not_spoken: list[PlannedSpeaker] = Field(default_factory=list)


class SpeakerTotal(_Model):
    """One speaker's totals over the span."""

    identity: str
    name: str
    venue_name: str
    level: Level | None = None
    speeches: int
    seconds: float
    overrun_seconds: float


class SpeakingRecord(_Model):
    """The speaking record of one session span."""

    room_id: str
    title: str
    recording_id: str | None
    live: bool
    started_at: float
    ended_at: float
    items: list[AgendaItemRecord]
    speakers: list[SpeakerTotal]
    #: Speeches in the order they were given (the same objects as in ``items``).
    speeches: list[Speech]


@dataclass
class _Open:
    identity: str
    agenda_index: int
    start: float
    held_since: float | None
    limit: int | None
    entry_id: str | None
    held: float = 0.0
    #: How late the expiry timer ended the first grant (not the speaker's overrun).
    timer_slack: float = 0.0
    grants: int = 1
    ended_by: str = ""
    end: float = 0.0


@dataclass
class _Walk:
    source: SessionSource
    agenda_index: int
    current: _Open | None = None
    #: The last speech, if it ended by expiry (it may still be extended).
    expired: _Open | None = None
    done: list[_Open] = field(default_factory=list)
    #: index -> [first start, last end, seconds]
    visits: dict[int, list[float]] = field(default_factory=dict)
    item_since: float = 0.0

    def end_speech(self, at: float, reason: str) -> None:
        speech = self.current
        if speech is None:
            return
        if speech.held_since is not None:
            speech.held += max(at - speech.held_since, 0.0)
            speech.held_since = None
        if reason == "expired" and speech.grants == 1 and speech.limit:
            speech.timer_slack = max(speech.held - speech.limit, 0.0)
        speech.end, speech.ended_by = at, reason
        self.current = None
        self.expired = speech if reason == "expired" else None
        if speech not in self.done:
            self.done.append(speech)

    def grant(self, at: float, identity: str, limit: int | None, entry_id: str) -> None:
        holding = self.current
        if holding is not None and holding.identity == identity:
            holding.grants += 1  # more time for the one speaking: the same speech
            return
        self.end_speech(at, "replaced")
        resumed = self.expired
        if (
            resumed is not None
            and resumed.identity == identity
            and resumed.agenda_index == self.agenda_index
            and at - resumed.end <= EXTENSION_WINDOW
        ):
            resumed.grants += 1
            resumed.held_since = at
            self.current, self.expired = resumed, None
            return
        self.expired = None
        self.current = _Open(identity, self.agenda_index, at, at, limit, entry_id)

    def set_item(self, at: float, index: int) -> None:
        self.close_item(at)
        self.agenda_index = index
        self.item_since = at

    def close_item(self, at: float) -> None:
        visit = self.visits.setdefault(self.agenda_index, [self.item_since, at, 0.0])
        visit[1] = at
        visit[2] += max(at - self.item_since, 0.0)


def speaking_record(source: SessionSource) -> SpeakingRecord:
    """The speaking record of the span (see the module docstring for the rules)."""
    walk = _Walk(source, source.initial_agenda_index, item_since=source.started_at)
    if source.initial_floor:
        walk.current = _Open(
            source.initial_floor,
            walk.agenda_index,
            source.started_at,
            source.started_at,
            None,
            None,
        )
    for entry in source.timeline:
        at = entry.ts / 1000
        identity = entry.data.get("identity")
        match entry.type:
            case "floor_granted" if isinstance(identity, str):
                limit = entry.data.get("time_limit_seconds")
                walk.grant(at, identity, limit if isinstance(limit, int) else None, entry.id)
            case "floor_revoked" if walk.current is not None:
                by = entry.data.get("by")
                walk.end_speech(at, "yielded" if by == walk.current.identity else "revoked")
            case "floor_expired" if walk.current is not None:
                walk.end_speech(at, "expired")
            case "left" if walk.current is not None and identity == walk.current.identity:
                walk.end_speech(at, "left")
            case "session_ended":
                walk.end_speech(at, "session_ended")
            case "agenda_advanced":
                index = entry.data.get("index")
                if isinstance(index, int):
                    walk.set_item(at, index)
    walk.end_speech(source.ended_at, "speaking" if source.live else "recording_end")
    walk.close_item(source.ended_at)
    return _record(source, walk)


def _record(source: SessionSource, walk: _Walk) -> SpeakingRecord:
    names: dict[str, str] = {}
    staged = {str(e.data.get("identity")) for e in source.timeline if e.type == "stage_started"}
    for entry in source.timeline:
        identity, name = entry.data.get("identity"), entry.data.get("name")
        if isinstance(identity, str) and isinstance(name, str):
            names.setdefault(identity, name)
    speeches: list[Speech] = []
    for speech in sorted(walk.done, key=lambda s: s.start):
        who = source.who(speech.identity)
        limit = speech.limit
        speeches.append(
            Speech(
                identity=speech.identity,
                name=who.name if who else names.get(speech.identity, speech.identity),
                venue=who.venue if who else "",
                venue_name=who.venue_name if who else "",
                level=who.level if who else None,
                agenda_index=speech.agenda_index,
                start=speech.start,
                end=speech.end,
                duration=round(speech.held, 3),
                time_limit_seconds=limit,
                overrun_seconds=round(max(speech.held - limit - speech.timer_slack, 0.0), 3)
                if limit
                else 0.0,
                ended_by=speech.ended_by,
                grants=speech.grants,
                offset=source.offset(speech.start),
                entry_id=speech.entry_id,
                on_stage=speech.identity in staged,
            )
        )
    items = []
    for index, item in enumerate(source.room.agenda):
        spoken = [s for s in speeches if s.agenda_index == index]
        visit = walk.visits.get(index)
        planned_seconds = item.duration_minutes * 60 if item.duration_minutes else None
        seconds = round(visit[2], 3) if visit else 0.0
        items.append(
            AgendaItemRecord(
                index=index,
                title=item.title,
                start=visit[0] if visit else None,
                end=visit[1] if visit else None,
                seconds=seconds,
                planned_minutes=item.duration_minutes,
                overrun_seconds=round(max(seconds - planned_seconds, 0.0), 3)
                if planned_seconds
                else 0.0,
                offset=source.offset(visit[0]) if visit else None,
                speeches=spoken,
                planned_speakers=list(item.planned_speakers),
                not_spoken=[
                    PlannedSpeaker(identity=p, name=_name(source, names, p))
                    for p in item.planned_speakers
                    if p not in {s.identity for s in spoken}
                ],
            )
        )
    totals: dict[str, SpeakerTotal] = {}
    for given in speeches:
        total = totals.get(given.identity)
        if total is None:
            total = totals[given.identity] = SpeakerTotal(
                identity=given.identity,
                name=given.name,
                venue_name=given.venue_name,
                level=given.level,
                speeches=0,
                seconds=0.0,
                overrun_seconds=0.0,
            )
        total.speeches += 1
        total.seconds = round(total.seconds + given.duration, 3)
        total.overrun_seconds = round(total.overrun_seconds + given.overrun_seconds, 3)
    return SpeakingRecord(
        room_id=source.room.id,
        title=source.room.title,
        recording_id=source.recording_id,
        live=source.live,
        started_at=source.started_at,
        ended_at=source.ended_at,
        items=items,
        speakers=sorted(totals.values(), key=lambda t: -t.seconds),
        speeches=speeches,
    )


def _name(source: SessionSource, names: dict[str, str], identity: str) -> str:
    who = source.who(identity)
    return who.name if who else names.get(identity, identity)
