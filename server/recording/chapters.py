"""From the session's timeline to who is on screen, and to chapters.

The timeline (the room's Redis stream) says when the floor was granted,
revoked or expired, when the agenda moved on, and when a screen was shared.
Times here are seconds from the recording's start; entries before the start
only set the initial state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.rooms.models import TimelineEntry

from .models import Chapter, SpeakerSegment

FLOOR_GRANTED = "floor_granted"
SCREEN_STARTED = "screen_share_started"
SCREEN_STOPPED = "screen_share_stopped"
FLOOR_ENDED = ("floor_revoked", "floor_expired")
AGENDA_ADVANCED = "agenda_advanced"
#: Changes closer together than this (seconds) make one MP4 chapter.
MIN_CHAPTER = 0.5


def _offset(entry: TimelineEntry, started_at: float, duration: float) -> float:
    return min(max(entry.ts / 1000.0 - started_at, 0.0), duration)


def speaker_segments(
    timeline: Sequence[TimelineEntry],
    *,
    started_at: float,
    duration: float,
    initial_floor: str | None,
) -> list[SpeakerSegment]:
    """Who holds the floor over time (None: nobody; the host is shown), covering [0, duration]."""
    segments: list[SpeakerSegment] = []
    current = initial_floor
    since = 0.0
    for entry in timeline:
        if entry.type == FLOOR_GRANTED:
            speaker = entry.data.get("identity")
            following = speaker if isinstance(speaker, str) else None
        elif entry.type in FLOOR_ENDED:
            following = None
        else:
            continue
        at = _offset(entry, started_at, duration)
        if following == current:
            continue
        if at > since:
            segments.append(
                SpeakerSegment(identity=current, start=round(since, 3), end=round(at, 3))
            )
        current, since = following, at
    if duration > since or not segments:
        segments.append(
            SpeakerSegment(identity=current, start=round(since, 3), end=round(duration, 3))
        )
    return segments


@dataclass(frozen=True)
class ScreenSegment:
    """A shared screen (the video track `track` of `identity`) from `start` to `end` (seconds)."""

    identity: str
    track: str
    start: float
    end: float


def screen_segments(
    timeline: Sequence[TimelineEntry], *, started_at: float, duration: float
) -> list[ScreenSegment]:
    """When a screen was shared during the recording, and whose (a share ends when the
    timeline says so, or at the end of the recording)."""
    segments: list[ScreenSegment] = []
    current: tuple[str, str, float] | None = None  # identity, track, since
    for entry in timeline:
        if entry.type not in (SCREEN_STARTED, SCREEN_STOPPED):
            continue
        at = _offset(entry, started_at, duration)
        if current is not None and at > current[2]:
            segments.append(
                ScreenSegment(current[0], current[1], round(current[2], 3), round(at, 3))
            )
        current = None
        identity, track = entry.data.get("identity"), entry.data.get("track")
        if entry.type == SCREEN_STARTED and isinstance(identity, str) and isinstance(track, str):
            current = (identity, track, at)
    if current is not None and duration > current[2]:
        segments.append(
            ScreenSegment(current[0], current[1], round(current[2], 3), round(duration, 3))
        )
    return segments


def agenda_chapters(
    timeline: Sequence[TimelineEntry],
    *,
    started_at: float,
    duration: float,
    initial_index: int,
    agenda: Sequence[str],
) -> list[Chapter]:
    """One chapter per agenda item the recording covers (none if the session has no agenda)."""
    if not agenda:
        return []
    chapters: list[Chapter] = []
    index = min(max(initial_index, 0), len(agenda) - 1)
    since = 0.0
    for entry in timeline:
        if entry.type != AGENDA_ADVANCED:
            continue
        new_index = entry.data.get("index")
        if not isinstance(new_index, int) or not 0 <= new_index < len(agenda) or new_index == index:
            continue
        at = _offset(entry, started_at, duration)
        if at > since:
            chapters.append(_agenda_chapter(index, agenda, since, at))
        index, since = new_index, at
    if duration > since or not chapters:
        chapters.append(_agenda_chapter(index, agenda, since, duration))
    return chapters


def _agenda_chapter(index: int, agenda: Sequence[str], start: float, end: float) -> Chapter:
    return Chapter(
        kind="agenda",
        title=agenda[index],
        start=round(start, 3),
        end=round(end, 3),
        agenda_index=index,
    )


def speaker_chapters(segments: Sequence[SpeakerSegment], names: Mapping[str, str]) -> list[Chapter]:
    """One chapter per turn at the floor (stretches where the host is shown are not chapters)."""
    return [
        Chapter(
            kind="speaker",
            title=names.get(segment.identity, segment.identity),
            start=segment.start,
            end=segment.end,
            identity=segment.identity,
        )
        for segment in segments
        if segment.identity is not None and segment.end > segment.start
    ]


def flat_chapters(
    agenda: Sequence[Chapter],
    segments: Sequence[SpeakerSegment],
    names: Mapping[str, str],
    host: str | None,
) -> list[tuple[float, float, str]]:
    """Non-overlapping (start, end, title) for MP4 chapters: "agenda item · who is shown".

    A new chapter begins wherever the agenda item or the person on screen changes.
    Changes less than ``MIN_CHAPTER`` seconds apart (the host advancing the agenda
    and taking the floor back in one gesture) make one chapter, titled by the
    state after the last of them.
    """
    end = max([c.end for c in agenda] + [s.end for s in segments] + [0.0])
    clusters: list[tuple[float, float]] = []  # (start, moment whose state names it)
    for cut in sorted({c.start for c in agenda} | {s.start for s in segments} | {0.0}):
        if clusters and cut - clusters[-1][0] < MIN_CHAPTER:
            clusters[-1] = (clusters[-1][0], cut)
        else:
            clusters.append((cut, cut))
    result: list[tuple[float, float, str]] = []
    for i, (start, moment) in enumerate(clusters):
        stop = clusters[i + 1][0] if i + 1 < len(clusters) else end
        if stop <= start:
            continue
        item = next((c for c in agenda if c.start <= moment < c.end), None)
        segment = next((s for s in segments if s.start <= moment < s.end), None)
        who = segment.identity if segment is not None and segment.identity else host
        parts = [item.title] if item is not None else []
        if who is not None:
            parts.append(names.get(who, who))
        title = " · ".join(parts) or "—"
        if result and result[-1][2] == title:
            result[-1] = (result[-1][0], stop, title)
        else:
            result.append((start, stop, title))
    return result
