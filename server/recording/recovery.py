"""Rebuilding finished files from the ``.part`` files a killed writer left behind.

A ``.part`` file of a killed process has a valid header and every cluster
closed before the kill (see ``track_file``), but no cues, no duration and
maybe a torn cluster at the end. Remuxing it (read every packet that parses,
write them to a new file, no decoding) gives a normal, seekable file. If not a
single packet can be read, the ``.part`` file is kept as it is and the
manifest says why: nothing is ever deleted silently.

Everything here blocks on disk I/O (run it in a thread).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from .track_file import CONTAINER_OPTIONS, PART_SUFFIX, TRACK_LOG_NAME, container_format

logger = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemuxResult:
    """What could be saved from one ``.part`` file."""

    packets: int
    duration: float
    width: int | None
    height: int | None


def remux_part(part: Path, final: Path) -> RemuxResult:
    """Copy every readable packet of ``part`` into ``final``; remove ``part`` on success.

    Raises ValueError if no packet can be read (``part`` is then left in place).
    """
    extension = final.suffix.lstrip(".")
    temporary = final.with_name(final.name + ".remux")
    try:
        source = av.open(str(part))
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"unreadable: {exc}") from exc
    packets = 0
    first: float | None = None
    last = 0.0
    width = height = None
    try:
        if not source.streams:
            raise ValueError("no stream in the file")
        stream: Any = source.streams[0]
        if stream.type == "video":
            width = int(stream.codec_context.width) or None
            height = int(stream.codec_context.height) or None
        target = av.open(
            str(temporary), "w", format=container_format(extension), options=dict(CONTAINER_OPTIONS)
        )
        try:
            out_stream = target.add_stream_from_template(stream, opaque=True)
            try:
                for packet in source.demux(stream):
                    if packet.dts is None or packet.size == 0:
                        continue
                    if packet.pts is not None and packet.time_base is not None:
                        start = float(packet.pts * packet.time_base)
                        end = start + float((packet.duration or 0) * packet.time_base)
                        first = start if first is None else min(first, start)
                        last = max(last, end, start)
                    packet.stream = out_stream
                    target.mux(packet)
                    packets += 1
            except (av.FFmpegError, EOFError) as exc:
                # The torn end of a killed writer's last cluster.
                logger.info("%s: stopped reading at a damaged end: %s", part.name, exc)
        finally:
            target.close()
    finally:
        source.close()
    if packets == 0:
        temporary.unlink(missing_ok=True)
        raise ValueError("no readable packet")
    os.replace(temporary, final)
    part.unlink()
    duration = max(last - (first or 0.0), 0.0)
    return RemuxResult(packets=packets, duration=duration, width=width, height=height)


def read_track_log(directory: Path) -> list[dict[str, Any]]:
    """One entry per file from ``tracks.jsonl``: later lines update earlier ones (the refined
    start offset); a torn last line is ignored."""
    path = directory / TRACK_LOG_NAME
    entries: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            entries.setdefault(entry["name"], {}).update(entry)
    return [e for e in entries.values() if "kind" in e]


def part_files(directory: Path) -> list[Path]:
    """The ``.part`` files in a recording folder."""
    return sorted(p for p in directory.iterdir() if p.name.endswith(PART_SUFFIX))


def probe_duration(path: Path) -> float:
    """Duration in seconds of a finished file (from its header, else from its packets)."""
    with av.open(str(path)) as container:
        if container.duration:
            return float(container.duration) / 1_000_000
        stream: Any = container.streams[0]
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        return end
