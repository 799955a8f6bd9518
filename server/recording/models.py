"""The archive's vocabulary: recording states, the manifest and the summaries indexed in Redis.

The manifest (``manifest.json`` in each recording's folder) is the complete
record; the summary is what listing and search need, kept in Redis so they
never read the disk. Both are versioned JSON documents validated by pydantic.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.rooms.models import AgendaItem, Level, Room, TimelineEntry, Venue

#: Recording ids are slugs: they name folders and appear in URLs and Redis keys.
RECORDING_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"
RecordingId = Annotated[str, StringConstraints(pattern=RECORDING_ID_PATTERN)]
#: File names inside a recording folder: no separators, no leading dot.
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

_RECORDING_ID = re.compile(RECORDING_ID_PATTERN)
_FILE_NAME = re.compile(FILE_NAME_PATTERN)

#: 2: parts and gaps (a recording continued on another node after a failover or a drain).
MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"
COMBINED_NAME = "combined.mp4"


def is_recording_id(value: str) -> bool:
    """Whether ``value`` can be a recording id (checked before any disk or Redis access)."""
    return bool(_RECORDING_ID.fullmatch(value))


def is_file_name(value: str) -> bool:
    """Whether ``value`` can be a file name inside a recording folder."""
    return bool(_FILE_NAME.fullmatch(value)) and ".." not in value


#: recording: writing files; stopped: closed cleanly; failed: an I/O error ended it early;
#: interrupted: the writing process died, the files were recovered at restart.
RecordingState = Literal["recording", "stopped", "failed", "interrupted"]
#: none: never asked; queued/running: on the job queue; done: combined.mp4 exists.
RenderStateName = Literal["none", "queued", "running", "done", "failed"]
ChapterKind = Literal["agenda", "speaker"]
#: How a part ended. stopped/failed: the recording ended with it; handover: its node drained
#: and another node resumed (or was to resume) the recording; writer_lost: its node died and
#: another node resumed the recording; interrupted: its node died and nobody resumed it.
PartEndReason = Literal["stopped", "failed", "handover", "writer_lost", "interrupted"]
#: Why nothing was recorded for a while: the writer died, or the recording changed nodes.
GapReason = Literal["writer_lost", "handover"]


class Model(BaseModel):
    """Base of the archive's documents: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class ParticipantEntry(Model):
    """Someone who took part while the recording ran."""

    identity: str
    name: str
    role: str
    venue: str
    venue_name: str
    level: Level | None = None


class FileEntry(Model):
    """One per-track file: the participant's encoded packets as received."""

    name: str
    participant: str
    kind: Literal["audio", "video"]
    codec: str
    track_id: str
    #: Seconds from the recording's start to this file's first frame.
    start_offset: float
    duration: float = 0.0
    size: int = 0
    sha256: str = ""
    frames: int = 0
    #: Times packets were lost for good and the file resumed at the next keyframe.
    gaps: int = 0
    width: int | None = None
    height: int | None = None
    #: True when the file was rebuilt from an interrupted ``.part`` file.
    recovered: bool = False
    #: Why this file is incomplete or missing, if it is.
    error: str | None = None
    #: The part of the recording (see Part) whose writer made this file.
    part: int = Field(default=1, ge=1)


class Part(Model):
    """One stretch of a recording written by one node without interruption.

    A recording has one part unless its writer died or drained and another node
    resumed it: each resume starts a new part in the same folder, on the same clock.
    """

    #: 1, 2, ... in order.
    index: int = Field(ge=1)
    #: The node that wrote this part.
    node: str
    #: Wall-clock seconds since the epoch (like Manifest.started_at).
    started_at: float
    #: When the part's writing ended; for a writer that died, where its recovered media ends.
    stopped_at: float | None = None
    reason: PartEndReason | None = None


class Gap(Model):
    """A stretch between two parts when nothing was recorded (the recording changed nodes)."""

    #: Seconds from the recording's start (like file offsets and chapters).
    start: float
    end: float
    reason: GapReason


class Chapter(Model):
    """A stretch of the recording: an agenda item, or one speaker's turn."""

    kind: ChapterKind
    title: str
    start: float
    end: float
    identity: str | None = None
    agenda_index: int | None = None


class SpeakerSegment(Model):
    """Who the combined video shows from ``start`` to ``end`` (seconds)."""

    identity: str | None
    start: float
    end: float


class CombinedFile(Model):
    """The rendered speaker-view MP4."""

    name: str = COMBINED_NAME
    size: int
    sha256: str
    duration: float
    width: int
    height: int
    chapters: int
    rendered_at: float
    #: Which font drew the captions (a CJK font, or a fallback that cannot show Chinese).
    font: str


class RoomInfo(Model):
    """The session as it was defined when the recording started."""

    id: str
    title: str
    topic: str = ""
    scheduled_start: str
    venues: list[Venue]
    agenda: list[AgendaItem]

    @classmethod
    def of(cls, room: Room) -> RoomInfo:
        """The recorded view of a session's definition."""
        return cls(
            id=room.id,
            title=room.title,
            topic=room.topic,
            scheduled_start=room.scheduled_start.isoformat(),
            venues=room.venues,
            agenda=room.agenda,
        )


class Manifest(Model):
    """Everything about one recording; written to ``manifest.json`` in its folder."""

    version: int = MANIFEST_VERSION
    id: str
    state: RecordingState
    #: False if anything is missing: failed, interrupted, or a file could not be written.
    #: Gaps between parts (a recording resumed on another node) are listed in ``gaps``.
    complete: bool
    error: str | None = None
    room: RoomInfo
    started_at: float
    stopped_at: float | None = None
    duration: float = 0.0
    started_by: str
    node: str
    #: Who held the floor and which agenda item was current when recording started.
    initial_floor: str | None = None
    initial_agenda_index: int = 0
    host: str | None = None
    participants: list[ParticipantEntry] = Field(default_factory=list)
    #: Who was present when the recording started (attendance starts from them).
    present_at_start: list[str] = Field(default_factory=list)
    #: Everyone invited to the session (a token was issued) when the recording stopped:
    #: attendance lists those who never came as absent.
    roster: list[ParticipantEntry] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    chapters: list[Chapter] = Field(default_factory=list)
    speakers: list[SpeakerSegment] = Field(default_factory=list)
    combined: CombinedFile | None = None
    #: The stretches written without interruption, in order (empty in version 1 manifests:
    #: see :meth:`all_parts`).
    parts: list[Part] = Field(default_factory=list)
    #: Where nothing was recorded between two parts, in order.
    gaps: list[Gap] = Field(default_factory=list)

    def all_parts(self) -> list[Part]:
        """The parts; a manifest written before parts existed has one, by its own node."""
        return list(self.parts) or [Part(index=1, node=self.node, started_at=self.started_at)]

    def file(self, name: str) -> FileEntry | None:
        """The per-track file with exactly this name."""
        return next((f for f in self.files if f.name == name), None)

    def downloadable(self, name: str) -> bool:
        """Whether ``name`` is a file of this recording that may be served."""
        if self.combined is not None and name == self.combined.name:
            return True
        entry = self.file(name)
        return entry is not None and entry.error is None


class RenderStatus(Model):
    """The combined-video job's state as the API and the archive page show it."""

    state: RenderStateName = "none"
    progress: float = 0.0
    message: str = ""
    job_id: str | None = None
    attempt: int = 0
    updated: float = 0.0


class RecordingSummary(Model):
    """One row of the archive, kept in Redis for listing and search."""

    id: str
    room_id: str
    title: str
    state: RecordingState
    complete: bool
    error: str | None = None
    started_at: float
    stopped_at: float | None = None
    duration: float = 0.0
    started_by: str
    node: str
    venues: list[Venue]
    agenda: list[str] = Field(default_factory=list)
    #: Identities who held the floor (and the host).
    speakers: list[str] = Field(default_factory=list)
    speaker_names: list[str] = Field(default_factory=list)
    participants: int = 0
    files: int = 0
    has_combined: bool = False
    #: How many nodes wrote it in turn, and where nothing was recorded between them.
    parts: int = 1
    gaps: list[Gap] = Field(default_factory=list)


class RecordingInfo(Model):
    """What start/resume/stop return and what the change callbacks receive."""

    id: str
    room_id: str
    state: RecordingState
    complete: bool
    started_at: float
    stopped_at: float | None = None
    started_by: str
    error: str | None = None
    tracks: int = 0
    render: RenderStatus = Field(default_factory=RenderStatus)
    #: The part being written (or, once the recording ended, how many there were).
    part: int = 1
    #: The recording continued on another node after a gap (part > 1).
    resumed: bool = False

    @classmethod
    def from_summary(
        cls, summary: RecordingSummary, render: RenderStatus | None = None
    ) -> RecordingInfo:
        """The info view of an indexed summary."""
        return cls(
            id=summary.id,
            room_id=summary.room_id,
            state=summary.state,
            complete=summary.complete,
            started_at=summary.started_at,
            stopped_at=summary.stopped_at,
            started_by=summary.started_by,
            error=summary.error,
            tracks=summary.files,
            render=render or RenderStatus(),
            part=summary.parts,
            resumed=summary.parts > 1,
        )


class RecordingList(Model):
    """The archive listing / search result, newest first."""

    recordings: list[RecordingSummary]
    render: dict[str, RenderStatus] = Field(default_factory=dict)


class RecordingDetail(Model):
    """One recording: its summary, its manifest (once written) and the render job's state."""

    summary: RecordingSummary
    manifest: Manifest | None
    render: RenderStatus
    #: Appended to file URLs (``?access=...``) so a <video> element can fetch them.
    access: str
    access_expires: int
