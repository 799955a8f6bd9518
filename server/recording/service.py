"""RecordingService: start and stop room recordings, recover crashed ones, keep the archive.

One per server process. It owns the writer threads, the recordings in
progress on this node, the manifest files and the archive index in Redis.

Two thread pools do its disk I/O: the writer pool runs only the live path
(the recordings' writer passes, creating a folder, writing the manifest on
stop); the archive pool runs everything else (deletes, manifest reads for
the detail and file endpoints, recovery remuxes, retention, checksums of
stopped recordings). A large delete or a startup remux therefore never makes
a live recording's writer pass wait.
The HTTP edge and the domain call it; it calls back through ``on_change``
(every state change) and ``on_error`` (failures), so the caller can tell the
host and write the timeline. It never blocks the media path: packets are
buffered by the recorders and written by threads (see ``room_recording``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import logging
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from server.media import MediaRoom
from server.rooms.models import Participant, Room, TimelineEntry
from server.rooms.ports import RecordingContext
from server.state import keys
from server.state.store import RedisStore

from .archive_index import ArchiveIndex, summarize
from .chapters import agenda_chapters, speaker_chapters, speaker_segments
from .config import RecordingConfig
from .errors import ArchiveUnavailable, RecordingConflict, RecordingNotFound
from .jobs import RenderQueue
from .manifest_files import read_manifest, write_manifest
from .models import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    ParticipantEntry,
    RecordingDetail,
    RecordingInfo,
    RecordingSummary,
    RenderStatus,
    RoomInfo,
    is_recording_id,
)
from .recovery import part_files, probe_duration, read_track_log, remux_part, sha256_file
from .room_recording import RoomRecording
from .track_file import PART_SUFFIX

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ChangeCallback = Callable[[RecordingInfo], Awaitable[None] | None]
#: Parsed manifests kept for the file endpoint.
MANIFEST_CACHE_SIZE = 32

INTERRUPTED_MESSAGE = (
    "the recording process stopped unexpectedly; "
    "files were recovered up to their last flushed second"
)


@dataclass
class _Active:
    recording: RoomRecording
    manifest: Manifest
    room: Room


def new_recording_id(room_id: str, at: float) -> str:
    """``<room id>-<UTC date>-<UTC time>-<4 hex>``: sortable, unique, a slug."""
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%d-%H%M%S")
    return f"{room_id}-{stamp}-{secrets.token_hex(2)}"


def _participant_entry(room: Room, who: Participant | dict[str, Any]) -> ParticipantEntry | None:
    data = who.model_dump(mode="json") if isinstance(who, Participant) else who
    identity, venue_id = data.get("identity"), data.get("venue")
    if not isinstance(identity, str) or not isinstance(venue_id, str):
        return None
    venue = room.venue(venue_id)
    return ParticipantEntry(
        identity=identity,
        name=str(data.get("name") or identity),
        role=str(data.get("role") or "member"),
        venue=venue_id,
        venue_name=venue.name if venue else venue_id,
        level=venue.level if venue else None,
    )


class RecordingService:
    """Recordings of the rooms whose media this process hosts, and the archive."""

    def __init__(
        self,
        store: RedisStore,
        config: RecordingConfig,
        *,
        node_id: str,
        render_queue: RenderQueue | None = None,
        on_change: ChangeCallback | None = None,
        on_error: ChangeCallback | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.node_id = node_id
        self.index = ArchiveIndex(store.client)
        self.render_queue = render_queue
        self.on_change = on_change
        self.on_error = on_error
        #: Live path only: writer passes, new folders, manifests of stopped recordings.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.writer_threads, thread_name_prefix="recording-writer"
        )
        #: Archive and admin work, kept off the writer threads (see the module docstring).
        self._archive = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.archive_threads, thread_name_prefix="recording-archive"
        )
        self._active: dict[str, _Active] = {}
        self._starting: set[str] = set()
        self._manifests: dict[str, tuple[tuple[int, int, int], Manifest]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._closed = False

    # --- recording --------------------------------------------------------------------------

    def is_recording(self, room_id: str) -> bool:
        """Whether this process is recording the room now."""
        return room_id in self._active

    def current(self, room_id: str) -> RecordingInfo | None:
        """The room's recording in progress on this process, if any."""
        active = self._active.get(room_id)
        return None if active is None else self._info(active.manifest, active.recording)

    def recording(self, room_id: str) -> RoomRecording | None:
        """The room's RoomRecording (diagnostics, tests, benchmarks)."""
        active = self._active.get(room_id)
        return None if active is None else active.recording

    def tracks_changed(self, room_id: str) -> None:
        """Attach to new tracks at once (call on the media layer's TracksChanged; optional)."""
        active = self._active.get(room_id)
        if active is not None:
            active.recording.sync_tracks()

    async def start(
        self,
        room_id: str,
        media_room: MediaRoom,
        room: Room,
        started_by: str,
        context: RecordingContext | None = None,
    ) -> RecordingInfo:
        """Start recording every track of ``media_room``, now and as tracks come.

        Raises RecordingConflict (already recording here or on another node, media
        closed) or ArchiveUnavailable (the folder cannot be written; the failed
        recording is still indexed and ``on_error`` is called).
        """
        if self._closed:
            raise RecordingConflict("recording_unavailable", "the recording service is closed")
        if room_id in self._active or room_id in self._starting:
            raise RecordingConflict("already_recording", "this session is already being recorded")
        if media_room.closed:
            raise RecordingConflict("media_closed", "the session's media has ended")
        self._starting.add(room_id)
        try:
            return await self._start(
                room_id, media_room, room, started_by, context or RecordingContext(None, 0, [])
            )
        finally:
            self._starting.discard(room_id)

    async def _start(
        self,
        room_id: str,
        media_room: MediaRoom,
        room: Room,
        started_by: str,
        context: RecordingContext,
    ) -> RecordingInfo:
        other = await self.index.active(room_id)
        if other is not None:
            if await self.index.lease_holder(other) is not None:
                raise RecordingConflict(
                    "already_recording", "this session is already being recorded"
                )
            # A claim left by a writer that died: recover its files (in the background),
            # since the claim that the periodic recovery looks for is about to be replaced.
            self._spawn(self._recover_one(other))
        started_at = time.time()
        recording_id = new_recording_id(room_id, started_at)
        directory = self.config.recordings_dir / recording_id
        entries = [
            e for e in (_participant_entry(room, p) for p in context.participants) if e is not None
        ]
        host = next((e.identity for e in entries if e.role == "host"), None)
        manifest = Manifest(
            id=recording_id,
            state="recording",
            complete=False,
            room=RoomInfo.of(room),
            started_at=started_at,
            started_by=started_by,
            node=self.node_id,
            initial_floor=context.floor,
            initial_agenda_index=context.agenda_index,
            host=host,
            participants=entries,
        )
        try:
            await self._io(self._prepare_folder, directory, manifest)
        except OSError as exc:
            message = f"the archive folder cannot be written: {exc.strerror or exc}"
            failed = manifest.model_copy(
                update={"state": "failed", "error": message, "stopped_at": time.time()}
            )
            await self.index.put(summarize(failed))
            logger.error("recording %s of %s failed to start: %s", recording_id, room_id, message)
            await self._notify(self._info(failed, None), error=True)
            raise ArchiveUnavailable("archive_unwritable", message) from exc
        # A claim left by a dead writer (no lease, checked above) is simply taken over.
        await self.index.set_active(room_id, recording_id)
        await self.index.hold_lease(recording_id, self.node_id, self.config.lease_ttl)
        await self.index.put(summarize(manifest))
        recording = RoomRecording(
            recording_id=recording_id,
            room_id=room_id,
            media_room=media_room,
            directory=directory,
            executor=self._executor,
            archive_executor=self._archive,
            flush_interval=self.config.flush_interval,
            started_at=started_at,
            on_failed=self._recording_failed,
            on_room_closed=self._room_closed,
            stop_timeout=self.config.stop_timeout,
        )
        self._active[room_id] = _Active(recording, manifest, room)
        recording.start()
        self._ensure_lease_task()
        logger.info("recording %s of room %s started by %s", recording_id, room_id, started_by)
        info = self._info(manifest, recording)
        await self._notify(info)
        return info

    async def stop(self, room_id: str) -> RecordingInfo:
        """Stop the room's recording: close files, write the manifest, queue the combined video."""
        active = self._active.pop(room_id, None)
        if active is None:
            raise RecordingConflict("not_recording", "this session is not being recorded here")
        return await self._finish(active)

    async def close(self) -> None:
        """Stop every recording (files closed properly) and the background tasks (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        for room_id in list(self._active):
            with contextlib.suppress(Exception):
                await self.stop(room_id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Nothing is queued any more; a thread stuck on a hung disk must not block the loop.
        self._executor.shutdown(wait=False)
        self._archive.shutdown(wait=False)

    # --- the archive ------------------------------------------------------------------------

    def directory(self, recording_id: str) -> Path:
        """The folder of a recording (the id must be valid)."""
        if not is_recording_id(recording_id):
            raise RecordingNotFound("recording_not_found", "no recording has this id")
        return self.config.recordings_dir / recording_id

    async def summary(self, recording_id: str) -> RecordingSummary:
        """The indexed summary; RecordingNotFound otherwise."""
        if not is_recording_id(recording_id):
            raise RecordingNotFound("recording_not_found", "no recording has this id")
        summary = await self.index.get(recording_id)
        if summary is None:
            raise RecordingNotFound("recording_not_found", "no recording has this id")
        return summary

    async def detail(
        self, recording_id: str, access: str = "", expires: int = 0
    ) -> RecordingDetail:
        """Summary, manifest (from its folder) and render status of one recording."""
        summary = await self.summary(recording_id)
        manifest = await self._archive_io(read_manifest, self.directory(recording_id))
        render = await self.index.render_status(recording_id)
        return RecordingDetail(
            summary=summary,
            manifest=manifest,
            render=render,
            access=access,
            access_expires=expires,
        )

    async def manifest(self, recording_id: str) -> Manifest:
        """The manifest of a recording; RecordingNotFound if it has none (yet).

        Parsed manifests are cached by file identity (a video element makes many range
        requests, each of which checks the file name against the manifest).
        """
        path = self.directory(recording_id) / MANIFEST_NAME
        try:
            stat = await self._archive_io(path.stat)
        except OSError:
            raise RecordingNotFound("recording_not_found", "no recording has this id") from None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._manifests.get(recording_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        manifest = await self._archive_io(read_manifest, path.parent)
        if manifest is None or manifest.id != recording_id:
            raise RecordingNotFound("recording_not_found", "no recording has this id")
        if len(self._manifests) >= MANIFEST_CACHE_SIZE:
            self._manifests.pop(next(iter(self._manifests)))
        self._manifests[recording_id] = (stamp, manifest)
        return manifest

    async def search(
        self,
        *,
        query: str | None = None,
        since: float | None = None,
        until: float | None = None,
        venue: str | None = None,
        speaker: str | None = None,
        limit: int = 100,
    ) -> tuple[list[RecordingSummary], dict[str, RenderStatus]]:
        """Recordings matching every given filter, newest first, with their render states."""
        found = await self.index.search(
            query=query, since=since, until=until, venue=venue, speaker=speaker, limit=limit
        )
        renders = await self.index.render_statuses([s.id for s in found]) if found else {}
        return found, renders

    async def delete(self, recording_id: str) -> None:
        """Delete a recording's files and index entries (not while it records or renders)."""
        summary = await self.summary(recording_id)
        if summary.state == "recording" and (
            await self.index.lease_holder(recording_id) is not None
            or any(a.manifest.id == recording_id for a in self._active.values())
        ):
            raise RecordingConflict("recording_running", "stop the recording before deleting it")
        render = await self.index.render_status(recording_id)
        if render.state == "running":
            raise RecordingConflict(
                "render_running", "the combined video is being made; retry later"
            )
        await self._archive_io(shutil.rmtree, self.directory(recording_id), True)
        await self.index.delete(recording_id)
        self._manifests.pop(recording_id, None)
        logger.info("recording %s deleted", recording_id)

    async def render(self, recording_id: str) -> RenderStatus:
        """Enqueue the combined video (again); returns the job's status."""
        summary = await self.summary(recording_id)
        if summary.state == "recording":
            raise RecordingConflict("recording_running", "stop the recording first")
        if self.render_queue is None:
            raise RecordingConflict("render_unavailable", "no render queue is configured")
        return await self.render_queue.enqueue(recording_id, self.directory(recording_id))

    async def sweep_retention(self, now: float | None = None) -> list[str]:
        """Delete recordings that started more than ``retention_days`` ago; returns their ids."""
        if self.config.retention_days is None:
            return []
        cutoff = (time.time() if now is None else now) - self.config.retention_days * 86400
        deleted = []
        for recording_id in await self.index.older_than(cutoff):
            try:
                await self.delete(recording_id)
            except (RecordingConflict, RecordingNotFound) as exc:
                logger.info("retention: keeping %s for now (%s)", recording_id, exc.code)
                continue
            deleted.append(recording_id)
        if deleted:
            logger.info(
                "retention: deleted %d recordings older than %s days",
                len(deleted),
                self.config.retention_days,
            )
        return deleted

    # --- recovery ---------------------------------------------------------------------------

    async def recover(self, scan_disk: bool = True) -> list[RecordingInfo]:
        """Close recordings whose writer died (remux ``.part`` files, mark them incomplete).

        With ``scan_disk`` (at startup) every folder is looked at: this also repairs
        ``.part`` files of failed recordings and re-indexes finished recordings missing
        from Redis. Without it (the periodic run) only the recordings Redis lists as in
        progress are checked, so a large archive is not read every minute.
        """
        if scan_disk:
            folders: list[Path] = await self._archive_io(self._recording_folders)
        else:
            claimed = await self.index.active_recordings()
            folders = [self.config.recordings_dir / rid for rid in claimed if is_recording_id(rid)]
            folders = [f for f in folders if await self._archive_io(f.is_dir)]
        own = {a.manifest.id for a in self._active.values()}
        recovered = []
        for directory in folders:
            manifest = await self._archive_io(read_manifest, directory)
            if manifest is None or manifest.id != directory.name or manifest.id in own:
                continue
            if manifest.state == "recording":
                if await self.index.lease_holder(manifest.id) is not None:
                    continue  # still being written by a live node
                recovered.append(await self._recover(directory, manifest))
            elif manifest.state == "failed":
                leftovers: list[Path] = await self._archive_io(part_files, directory)
                if leftovers:
                    recovered.append(await self._recover(directory, manifest))
            elif await self.index.get(manifest.id) is None:
                await self.index.put(summarize(manifest))
        return recovered

    async def _recover_one(self, recording_id: str) -> None:
        if not is_recording_id(recording_id):
            return
        directory = self.config.recordings_dir / recording_id
        manifest = await self._archive_io(read_manifest, directory)
        if manifest is None or manifest.state != "recording":
            return
        if await self.index.lease_holder(recording_id) is None:
            await self._recover(directory, manifest)

    async def _recover(self, directory: Path, manifest: Manifest) -> RecordingInfo:
        indexed = await self.index.get(manifest.id)
        failed = manifest.state == "failed" or (indexed is not None and indexed.state == "failed")
        files = await self._archive_io(self._recover_files, directory, manifest)
        ends = [f.start_offset + f.duration for f in files]
        stopped_at = manifest.stopped_at or manifest.started_at + max(ends, default=0.0)
        error = (manifest.error or (indexed.error if indexed else None)) if failed else None
        final = await self._complete(
            manifest,
            files,
            stopped_at=stopped_at,
            state="failed" if failed else "interrupted",
            error=error or INTERRUPTED_MESSAGE,
            archive=True,
        )
        logger.warning("recording %s recovered (%s): %d files", final.id, final.state, len(files))
        await self._publish(final, error=False)
        return self._info(final, None)

    @staticmethod
    def _recover_files(directory: Path, manifest: Manifest) -> list[FileEntry]:
        known: dict[str, FileEntry] = {f.name: f for f in manifest.files}
        for logged in read_track_log(directory):
            if logged["name"] not in known:
                known[logged["name"]] = FileEntry(
                    name=logged["name"],
                    participant=str(logged.get("participant", "")),
                    kind="video" if logged.get("kind") == "video" else "audio",
                    codec=str(logged.get("codec", "")),
                    track_id=str(logged.get("track_id", "")),
                    start_offset=float(logged.get("start_offset", 0.0)),
                    width=logged.get("width"),
                    height=logged.get("height"),
                )
        for part in part_files(directory):
            name = part.name[: -len(PART_SUFFIX)]
            if name not in known:
                video = "-video-" in name
                known[name] = FileEntry(
                    name=name,
                    participant=name.rsplit("-", 2)[0],
                    kind="video" if video else "audio",
                    codec=("vp8" if name.endswith(".webm") else "h264") if video else "opus",
                    track_id=name.rsplit(".", 1)[0],
                    start_offset=0.0,
                )
        files = []
        for name, entry in known.items():
            final, part = directory / name, directory / (name + PART_SUFFIX)
            if part.exists() and not final.exists():
                try:
                    result = remux_part(part, final)
                except ValueError as exc:
                    files.append(
                        entry.model_copy(
                            update={"error": f"unrecoverable ({exc}); data kept in {part.name}"}
                        )
                    )
                    continue
                entry = entry.model_copy(
                    update={
                        "recovered": True,
                        "error": None,
                        "duration": round(result.duration, 4),
                        "frames": result.packets,
                        "width": entry.width or result.width,
                        "height": entry.height or result.height,
                    }
                )
            elif final.exists():
                if entry.duration == 0.0:
                    entry = entry.model_copy(update={"duration": round(probe_duration(final), 4)})
            else:
                files.append(entry.model_copy(update={"error": entry.error or "file missing"}))
                continue
            files.append(
                entry.model_copy(
                    update={"size": final.stat().st_size, "sha256": sha256_file(final)}
                )
            )
        return files

    # --- background -------------------------------------------------------------------------

    def start_background(self) -> None:
        """Start the maintenance loop (recovery, retention) and the lease keeper.

        Call :meth:`recover` (with its full disk scan) once before this, at startup.
        """
        self._ensure_lease_task()
        self._background.append(
            asyncio.create_task(self._maintenance_loop(), name="recording-maintenance")
        )

    async def _maintenance_loop(self) -> None:
        # First pass once the leases of a writer that died just before our start have expired.
        delay = self.config.lease_ttl + 1.0
        while True:
            await asyncio.sleep(delay)
            delay = self.config.maintenance_interval
            try:
                await self.recover(scan_disk=False)
                await self.sweep_retention()
            except Exception:
                logger.exception("recording maintenance failed")

    def _ensure_lease_task(self) -> None:
        if not any(t.get_name() == "recording-leases" and not t.done() for t in self._background):
            self._background.append(
                asyncio.create_task(self._lease_loop(), name="recording-leases")
            )

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_seconds)
            for active in list(self._active.values()):
                try:
                    await self.index.hold_lease(
                        active.manifest.id, self.node_id, self.config.lease_ttl
                    )
                except Exception as exc:
                    logger.warning("lease of %s not renewed: %s", active.manifest.id, exc)

    # --- internals ---------------------------------------------------------------------------

    async def _io(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run blocking I/O of the live path on the writer threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def _archive_io(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run archive and admin I/O (deletes, manifest reads, recovery) off the writer threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._archive, lambda: function(*args, **kwargs))

    @staticmethod
    def _prepare_folder(directory: Path, manifest: Manifest) -> None:
        directory.mkdir(parents=True, exist_ok=False)
        write_manifest(directory, manifest)

    def _recording_folders(self) -> list[Path]:
        root = self.config.recordings_dir
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.is_dir() and is_recording_id(p.name))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("recording task failed", exc_info=task.exception())

    async def _recording_failed(self, recording: RoomRecording, message: str) -> None:
        # Called from the recording's own task: finish in another one.
        active = self._active.get(recording.room_id)
        if active is not None and active.recording is recording:
            del self._active[recording.room_id]
            self._spawn(self._finish(active))

    async def _room_closed(self, recording: RoomRecording) -> None:
        active = self._active.get(recording.room_id)
        if active is not None and active.recording is recording:
            del self._active[recording.room_id]
            logger.info(
                "recording %s: the session's media closed; stopping", recording.recording_id
            )
            self._spawn(self._finish(active))

    async def _finish(self, active: _Active) -> RecordingInfo:
        recording = active.recording
        files = await recording.stop()
        stopped_at = time.time()
        failed = recording.failed
        final = await self._complete(
            active.manifest,
            files,
            stopped_at=stopped_at,
            state="failed" if failed else "stopped",
            error=failed,
            room=active.room,
        )
        logger.info("recording %s %s: %d files", final.id, final.state, len(final.files))
        return await self._publish(final, error=failed is not None)

    async def _complete(
        self,
        manifest: Manifest,
        files: list[FileEntry],
        *,
        stopped_at: float,
        state: str,
        error: str | None,
        room: Room | None = None,
        archive: bool = False,
    ) -> Manifest:
        duration = max(stopped_at - manifest.started_at, 0.0)
        timeline = await self._timeline(manifest.room.id, manifest.started_at, stopped_at)
        participants = await self._participants(manifest, timeline, files, room)
        names = {p.identity: p.name for p in participants}
        segments = speaker_segments(
            timeline,
            started_at=manifest.started_at,
            duration=duration,
            initial_floor=manifest.initial_floor,
        )
        chapters = agenda_chapters(
            timeline,
            started_at=manifest.started_at,
            duration=duration,
            initial_index=manifest.initial_agenda_index,
            agenda=[item.title for item in manifest.room.agenda],
        ) + speaker_chapters(segments, names)
        complete = state == "stopped" and all(f.error is None for f in files)
        final = manifest.model_copy(
            update={
                "state": state,
                "complete": complete,
                "error": error if state != "stopped" else _file_errors(files),
                "stopped_at": stopped_at,
                "duration": round(duration, 3),
                "participants": participants,
                "host": manifest.host
                or next((p.identity for p in participants if p.role == "host"), None),
                "files": files,
                "timeline": timeline,
                "chapters": sorted(chapters, key=lambda c: (c.start, c.kind)),
                "speakers": segments,
            }
        )
        directory = self.config.recordings_dir / manifest.id
        try:
            if archive:  # recovery: archive work
                await self._archive_io(write_manifest, directory, final)
            else:  # a live recording stopping
                await self._io(write_manifest, directory, final)
        except OSError as exc:
            logger.error("recording %s: manifest not written: %s", manifest.id, exc)
            final = final.model_copy(
                update={
                    "complete": False,
                    "error": f"{final.error or ''}; manifest not written: {exc}".lstrip("; "),
                }
            )
        return final

    async def _publish(self, final: Manifest, *, error: bool) -> RecordingInfo:
        await self.index.put(summarize(final))
        await self.index.clear_active(final.room.id, final.id)
        await self.index.release_lease(final.id)
        render = await self.index.render_status(final.id)
        usable = [f for f in final.files if f.error is None]
        if (
            self.config.auto_render
            and self.render_queue is not None
            and final.state != "failed"
            and usable
        ):
            try:
                render = await self.render_queue.enqueue(
                    final.id, self.config.recordings_dir / final.id
                )
            except Exception as exc:
                logger.error("recording %s: combined video not enqueued: %s", final.id, exc)
        info = self._info(final, None, render)
        await self._notify(info, error=error)
        return info

    async def _timeline(self, room_id: str, since: float, until: float) -> list[TimelineEntry]:
        client: Any = self.store.client
        rows = await client.xrange(
            keys.room_timeline(room_id),
            min=str(int(since * 1000)),
            max=str(int(until * 1000) + 1),
            count=keys.TIMELINE_MAXLEN,
        )
        entries = []
        for entry_id, fields in rows:
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                entries.append(
                    TimelineEntry(
                        id=ident,
                        ts=float(ident.split("-", 1)[0]),
                        type=fields[b"type"].decode(),
                        data=json.loads(fields[b"data"]),
                    )
                )
            except (KeyError, ValueError) as exc:
                logger.debug("timeline entry %s skipped: %s", ident, exc)
        return entries

    async def _participants(
        self,
        manifest: Manifest,
        timeline: Iterable[TimelineEntry],
        files: Iterable[FileEntry],
        room: Room | None,
    ) -> list[ParticipantEntry]:
        definition = room or await self.store.get_room(manifest.room.id)
        found = {p.identity: p for p in manifest.participants}
        if definition is None:
            return list(found.values())
        for entry in timeline:
            if entry.type == "joined" and entry.data.get("identity") not in found:
                participant = _participant_entry(definition, entry.data)
                if participant is not None:
                    found[participant.identity] = participant
        missing = {f.participant for f in files} - set(found)
        if missing:
            for invitee in await self.store.roster(manifest.room.id):
                if invitee.identity in missing:
                    participant = _participant_entry(definition, invitee.model_dump(mode="json"))
                    if participant is not None:
                        found[participant.identity] = participant
        return list(found.values())

    def _info(
        self,
        manifest: Manifest,
        recording: RoomRecording | None,
        render: RenderStatus | None = None,
    ) -> RecordingInfo:
        return RecordingInfo(
            id=manifest.id,
            room_id=manifest.room.id,
            state=manifest.state,
            complete=manifest.complete,
            started_at=manifest.started_at,
            stopped_at=manifest.stopped_at,
            started_by=manifest.started_by,
            error=manifest.error,
            tracks=len(recording.recorders) if recording is not None else len(manifest.files),
            render=render or RenderStatus(),
        )

    async def _notify(self, info: RecordingInfo, *, error: bool = False) -> None:
        callbacks = [self.on_change] + ([self.on_error] if error else [])
        for callback in callbacks:
            if callback is None:
                continue
            try:
                result = callback(info)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("recording callback failed for %s", info.id)


def _file_errors(files: list[FileEntry]) -> str | None:
    broken = [f"{f.name}: {f.error}" for f in files if f.error]
    return "; ".join(broken) if broken else None
