"""A recording's parts and the gaps between them, as pure functions of the manifest.

A recording continues in a new part when another node resumes it (its writer
died, or drained and handed it over). Every part writes into the same folder
on the same clock (seconds from the recording's start), so the manifest only
has to say when each part ended and where nothing was recorded:

* a part closed cleanly (drain) ends when its files were closed;
* a part whose writer died ends where its recovered media ends (the last
  flushed cluster of any of its files), or at its own start if it recorded no
  media (how long a dead writer lived is not known);
* the gap between two parts runs from the end of the first to the start of
  the next.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import MANIFEST_VERSION, FileEntry, Gap, GapReason, Manifest, Part, PartEndReason


def offset_of(manifest: Manifest, moment: float) -> float:
    """Seconds from the recording's start to the wall-clock ``moment`` (3 decimals)."""
    return round(moment - manifest.started_at, 3)


def media_end(manifest: Manifest, files: Sequence[FileEntry], part: Part) -> float:
    """Where the part's usable media ends, in seconds from the recording's start."""
    ends = [f.start_offset + f.duration for f in files if f.part == part.index and f.error is None]
    return round(max(ends), 3) if ends else offset_of(manifest, part.started_at)


def begin_part(manifest: Manifest, node: str, at: float) -> Manifest:
    """Add the next part, written by ``node`` from ``at`` (wall clock).

    If the previous part was handed over cleanly its end is known, so the gap is
    recorded now; a part whose writer died gets its end and gap from
    :func:`close_lost_parts` once its files are recovered.
    """
    parts = manifest.all_parts()
    previous = parts[-1]
    gaps = list(manifest.gaps)
    if previous.stopped_at is not None:
        gaps.append(
            _gap(offset_of(manifest, previous.stopped_at), offset_of(manifest, at), "handover")
        )
    parts.append(Part(index=previous.index + 1, node=node, started_at=at))
    return _with(manifest, parts, gaps)


def end_part(manifest: Manifest, stopped_at: float, reason: PartEndReason) -> Manifest:
    """Close the last part at ``stopped_at`` (wall clock)."""
    parts = manifest.all_parts()
    parts[-1] = parts[-1].model_copy(update={"stopped_at": stopped_at, "reason": reason})
    return _with(manifest, parts, manifest.gaps)


def close_lost_parts(
    manifest: Manifest, files: Sequence[FileEntry], *, last: PartEndReason | None = None
) -> Manifest:
    """Close the parts whose writer died, from their recovered ``files``.

    Every part but the last that has no end yet ends where its media ends
    (``writer_lost``), with a gap up to the next part's start. The last part is
    closed the same way, with reason ``last``, only if ``last`` is given (the
    recording is being finalized; otherwise the last part is still being written).
    """
    parts = manifest.all_parts()
    gaps = list(manifest.gaps)
    for position, part in enumerate(parts):
        is_last = position == len(parts) - 1
        if part.stopped_at is not None or (is_last and last is None):
            continue
        end = media_end(manifest, files, part)
        parts[position] = part.model_copy(
            update={
                "stopped_at": manifest.started_at + end,
                "reason": last if is_last else "writer_lost",
            }
        )
        if not is_last:
            following = offset_of(manifest, parts[position + 1].started_at)
            gaps.append(_gap(end, following, "writer_lost"))
    gaps.sort(key=lambda g: g.start)
    return _with(manifest, parts, gaps)


def _with(manifest: Manifest, parts: list[Part], gaps: list[Gap]) -> Manifest:
    # A version 1 manifest (a recording older than parts) becomes version 2 with them.
    return manifest.model_copy(update={"parts": parts, "gaps": gaps, "version": MANIFEST_VERSION})


def _gap(start: float, end: float, reason: GapReason) -> Gap:
    # Wall clocks of two nodes may disagree a little: never a gap of negative length.
    return Gap(start=start, end=max(end, start), reason=reason)
