"""SessionRecord: attendance, speaking record and chat of one session, and where they come from.

:func:`session_record` is pure (a :class:`SessionSource` in, the record out);
:func:`recording_source` and :func:`live_room_source` read the source of a
stopped recording (its manifest) or of a live room (Redis).

Public questions and opinions come from the gallery's timeline entries: only
approved ones (`gallery_approved`, `gallery_answered`) carry text, so nothing
unmoderated reaches the record. Suggestions (issue 11's micro-suggestions) do
not exist yet: their section is always empty for now.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from server.rooms.errors import NotFound
from server.state import keys
from server.state.store import RedisStore

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
    #: Members' micro-suggestions (issue 11); empty until they exist.
    suggestions: list[dict[str, object]] = Field(default_factory=list)
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


def session_record(source: SessionSource) -> SessionRecord:
    """The whole record of one span."""
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
