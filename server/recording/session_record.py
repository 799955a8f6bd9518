"""SessionRecord: attendance, speaking record and chat of one session, and where they come from.

:func:`session_record` is pure (a :class:`SessionSource` in, the record out);
:func:`recording_source` and :func:`live_room_source` read the source of a
stopped recording (its manifest) or of a live room (Redis).

Public questions and opinions come from the gallery's timeline entries: only
approved ones (`gallery_approved`, `gallery_answered`) carry text, so nothing
unmoderated reaches the record. Members' micro-suggestions come from their
`suggestion_submitted` entries, joined with those the room still keeps (one
submitted before a recording started is in no recording's span) and with the
status and reply the secretariat set after the session (`room_suggestions`).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.rooms.errors import NotFound
from server.rooms.models import Suggestion
from server.rooms.suggestion_rules import CATEGORIES, SUBMITTED
from server.state import keys
from server.state.store import RedisStore
from server.state.suggestion_replies import SuggestionReplies, handled

from .attendance import Attendance, attendance
from .errors import RecordingConflict
from .models import Manifest
from .session_source import SessionSource, from_live_room, from_manifest
from .speaking import SpeakingRecord, speaking_record


class ChatMessage(BaseModel):
    """One chat message of the session."""

    model_config = ConfigDict(extra="forbid")

    entry_id: str
    at: float
    offset: float
    identity: str
    name: str
    agenda_index: int
    text: str


class PublicQuestion(BaseModel):
    """A question or opinion from the gallery that a moderator approved, with any answer."""

    model_config = ConfigDict(extra="forbid")

    #: The timeline entry that approved it (or answered it, when approved before the span).
    entry_id: str
    at: float
    offset: float
    id: str
    kind: str
    text: str
    name: str | None
    district: str | None
    agenda_index: int
    answer: str | None = None


class SuggestionRecord(BaseModel):
    """A member's micro-suggestion, with how it was handled after the session."""

    model_config = ConfigDict(extra="forbid")

    #: Its `suggestion_submitted` timeline entry (None: submitted before this span).
    entry_id: str | None
    at: float
    offset: float
    id: str
    identity: str
    name: str
    venue: str
    agenda_index: int
    category: str
    #: The category's Chinese label (the minutes and the archive's default language).
    category_label: str
    department: str | None
    title: str
    body: str
    before_session: bool
    status: str
    reply: str | None
    handled_at: float | None


class SessionRecord(BaseModel):
    """Everything the secretariat needs after a session, derived from its timeline."""

    model_config = ConfigDict(extra="forbid")

    room_id: str
    recording_id: str | None
    title: str
    topic: str
    scheduled_start: str
    started_at: float
    ended_at: float
    attendance: Attendance
    speaking: SpeakingRecord
    chat: list[ChatMessage]
    #: Members' micro-suggestions, in the order they were submitted.
    suggestions: list[SuggestionRecord] = Field(default_factory=list)
    #: Approved questions and opinions of the public gallery, in order of approval.
    questions: list[PublicQuestion] = Field(default_factory=list)


def chat_messages(source: SessionSource) -> list[ChatMessage]:
    """The chat of the span, each message with the agenda item current when it was sent."""
    index = source.initial_agenda_index
    found = []
    for entry in source.timeline:
        if entry.type == "agenda_advanced" and isinstance(entry.data.get("index"), int):
            index = int(str(entry.data["index"]))
        elif entry.type == "chat":
            at = entry.ts / 1000
            identity = str(entry.data.get("identity") or "")
            found.append(
                ChatMessage(
                    entry_id=entry.id,
                    at=at,
                    offset=source.offset(at),
                    identity=identity,
                    name=str(entry.data.get("name") or identity),
                    agenda_index=index,
                    text=str(entry.data.get("text") or ""),
                )
            )
    return found


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def public_questions(source: SessionSource) -> list[PublicQuestion]:
    """The gallery's approved items of the span, each with its last answer."""
    found: dict[str, PublicQuestion] = {}
    for entry in source.timeline:
        if entry.type not in ("gallery_approved", "gallery_answered"):
            continue
        data = entry.data
        item_id = str(data.get("id") or "")
        known = found.get(item_id)
        if known is not None:
            if entry.type == "gallery_answered":
                found[item_id] = known.model_copy(update={"answer": _text(data.get("answer"))})
            continue
        at = entry.ts / 1000
        index = data.get("agenda_index")
        found[item_id] = PublicQuestion(
            entry_id=entry.id,
            at=at,
            offset=source.offset(at),
            id=item_id,
            kind=str(data.get("kind") or "question"),
            text=str(data.get("text") or ""),
            name=_text(data.get("name")),
            district=_text(data.get("district")),
            agenda_index=index if isinstance(index, int) else 0,
            answer=_text(data.get("answer")),
        )
    return list(found.values())


def record_suggestions(
    source: SessionSource, kept: list[Suggestion] | None = None
) -> list[SuggestionRecord]:
    """The suggestions of the span's timeline and those `kept` by the room (with their
    handling) that were submitted before the span ended, in the order of submission."""
    entries: dict[str, str] = {}
    found: dict[str, Suggestion] = {}
    for entry in source.timeline:
        if entry.type != SUBMITTED:
            continue
        try:
            suggestion = Suggestion.model_validate(entry.data)
        except ValidationError:
            continue
        entries[suggestion.id] = entry.id
        found[suggestion.id] = suggestion
    for suggestion in kept or []:
        if suggestion.id in found or suggestion.submitted_at / 1000 <= source.ended_at:
            found[suggestion.id] = suggestion
    records = []
    for s in sorted(found.values(), key=lambda s: s.submitted_at):
        at = s.submitted_at / 1000
        records.append(
            SuggestionRecord(
                entry_id=entries.get(s.id),
                at=at,
                offset=source.offset(at),
                id=s.id,
                identity=s.by,
                name=s.name,
                venue=s.venue,
                agenda_index=s.agenda_index,
                category=s.category,
                category_label=CATEGORIES.get(s.category, (s.category, ""))[0],
                department=s.department,
                title=s.title,
                body=s.body,
                before_session=s.before_session,
                status=s.status,
                reply=s.reply,
                handled_at=s.handled_at,
            )
        )
    return records


async def room_suggestions(
    store: RedisStore, room_id: str, created_by: float | None = None
) -> list[Suggestion] | None:
    """The room's suggestions with their status and reply; None when the room is gone, or
    was created after `created_by` (seconds: a recording's start; then it is another
    session under the same id)."""
    room = await store.get_room(room_id)
    if room is None or (created_by is not None and room.created_at.timestamp() > created_by):
        return None
    snapshot = await store.snapshot(room_id)
    if snapshot is None:
        return []
    return handled(snapshot.suggestions, await SuggestionReplies(store.client).all(room_id))


def session_record(
    source: SessionSource, suggestions: list[Suggestion] | None = None
) -> SessionRecord:
    """The whole record of one span; `suggestions`: those the room keeps (see
    `room_suggestions`), else only the span's timeline is used."""
    return SessionRecord(
        room_id=source.room.id,
        recording_id=source.recording_id,
        title=source.room.title,
        topic=source.room.topic,
        scheduled_start=source.room.scheduled_start,
        started_at=source.started_at,
        ended_at=source.ended_at,
        attendance=attendance(source),
        speaking=speaking_record(source),
        chat=chat_messages(source),
        questions=public_questions(source),
        suggestions=record_suggestions(source, suggestions),
    )


def recording_source(manifest: Manifest) -> SessionSource:
    """The source of a recording's record; RecordingConflict while it is still recording."""
    if manifest.stopped_at is None:
        raise RecordingConflict(
            "recording_running",
            "the record of a recording is made when it stops; "
            "the live session's is at /api/rooms/{id}/attendance",
        )
    return from_manifest(manifest)


async def live_room_source(store: RedisStore, room_id: str) -> SessionSource:
    """The source of a live (or ended, not deleted) room's record, up to now."""
    room = await store.get_room(room_id)
    if room is None:
        raise NotFound("room_not_found", "no room has this id")
    roster = await store.roster(room_id)
    timeline = await store.timeline(room_id, count=keys.TIMELINE_MAXLEN)
    return from_live_room(room, roster, timeline, time.time())
