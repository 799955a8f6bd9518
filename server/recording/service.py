"""RecordingService: start, resume and stop room recordings, recover crashed ones, keep the archive.

One per server process. It owns the writer threads, the recordings in
progress on this node, the manifest files and the archive index in Redis.

Two thread pools do its disk I/O: the writer pool runs only the live path
(the recordings' writer passes, creating a folder, writing the manifest on
stop); the archive pool runs everything else (deletes, manifest reads for
the detail and file endpoints, recovery remuxes, retention, checksums of
stopped recordings). A large delete or a startup remux therefore never makes
a live recording's writer pass wait.
The room's owner calls it (start, resume, suspend, stop) with what it knows
of the session (:class:`RecordingContext`): the service never reads the live
room state. It calls back through ``on_change`` (every state change, a
resume included) and ``on_error`` (failures), so the caller can tell the host
and write the timeline. It never blocks the media path: packets are buffered
by the recorders and written by threads (see ``room_recording``).

Who writes a recording is decided by its lease in Redis, taken and renewed by
compare-and-set (``ArchiveIndex.acquire_lease``/``renew_lease``): only the
holder writes its manifest, and a node that finds its lease taken by another
stops writing at once.
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
from typing import IO, Any, ParamSpec, TypeVar

from server.media import MediaRoom
from server.rooms.models import Participant, Room, TimelineEntry
from server.rooms.ports import RecordingContext
from server.state import keys
from server.state.store import RedisStore

from .archive_index import ArchiveIndex, summarize
from .audit import AuditEntry, AuditLog, DeletedFile
from .chapters import agenda_chapters, speaker_chapters, speaker_segments
from .config import RecordingConfig
from .errors import ArchiveUnavailable, RecordingConflict, RecordingNotFound
from .export import write_export
from .jobs import RenderQueue
from .manifest_files import read_manifest, write_manifest
from .models import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    Part,
    ParticipantEntry,
    RecordingDetail,
    RecordingInfo,
    RecordingSummary,
    RenderStatus,
    RoomInfo,
    is_recording_id,
)
from .moment_index import MomentIndex, moments_of
from .parts import begin_part, close_lost_parts, end_part
from .recovery import part_files, probe_duration, read_track_log, remux_part, sha256_file
from .room_recording import RoomRecording
from .session_record import room_suggestions, session_record
from .session_source import apply_renames, from_manifest
from .track_file import PART_SUFFIX
from .track_recorder import parse_file_name

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ChangeCallback = Callable[[RecordingInfo], Awaitable[None] | None]
#: ``(room id, recording id)``: will the room's owner resume this recording? (see ``recover``)
ResumeExpected = Callable[[str, str], Awaitable[bool]]
#: Parsed manifests kept for the file endpoint.
MANIFEST_CACHE_SIZE = 32

INTERRUPTED_MESSAGE = (
    "the recording process stopped unexpectedly; "
    "files were recovered up to their last flushed second"
)
HANDED_OVER_MESSAGE = (
    "the recording was handed over to another node, which did not resume it; "
    "its files are complete up to the hand-over"
)


@dataclass
class _Active:
    recording: RoomRecording
    manifest: Manifest
    room: Room
    #: Recovering the files of earlier parts whose writer died (after a resume); the
    #: manifest is written again only once this is done.
    settling: asyncio.Task[None] | None = None


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


def _present(room: Room, context: RecordingContext) -> list[ParticipantEntry]:
    entries = (_participant_entry(room, p) for p in context.participants)
    return [e for e in entries if e is not None]


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
        resume_expected: ResumeExpected | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.node_id = node_id
        self.index = ArchiveIndex(store.client)
        self.moments = MomentIndex(store.client)
        self.audit = AuditLog(store.client)
        self.render_queue = render_queue
        self.on_change = on_change
        self.on_error = on_error
        #: Asked by recovery before it finalizes a recording left without a writer; None:
        #: nobody ever resumes (finalized at once). See :meth:`recover`.
        self.resume_expected = resume_expected
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
        #: Recordings this process finalizes now (their lease is renewed meanwhile).
        self._finalizing: set[str] = set()
        #: Recording id -> when this process first found it without a writer (the grace).
        self._orphaned: dict[str, float] = {}
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
        context: RecordingContext,
    ) -> RecordingInfo:
        """Start recording every track of ``media_room``, now and as tracks come.

        ``context`` is the session as the caller (the room's owner) holds it now: the
        floor, the agenda item and who is present go into the manifest.

        A room claim left by a recording whose writer is gone (no lease) is superseded:
        that recording is finalized as ``interrupted`` in the background. To continue
        it instead, call :meth:`resume`.

        Raises RecordingConflict (``already_recording`` here or on another node,
        ``media_closed``, ``recording_unavailable`` once closed) or ArchiveUnavailable
        (the folder cannot be written; the failed recording is still indexed and
        ``on_error`` is called).
        """
        self._check_can_record(room_id, media_room)
        self._starting.add(room_id)
        try:
            return await self._start(room_id, media_room, room, started_by, context)
        finally:
            self._starting.discard(room_id)

    def _check_can_record(self, room_id: str, media_room: MediaRoom) -> None:
        if self._closed:
            raise RecordingConflict("recording_unavailable", "the recording service is closed")
        if room_id in self._active or room_id in self._starting:
            raise RecordingConflict("already_recording", "this session is already being recorded")
        if media_room.closed:
            raise RecordingConflict("media_closed", "the session's media has ended")

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
            # A claim left by a writer that died (or handed over to nobody): finalize that
            # recording (in the background), since its claim is about to be replaced.
            self._spawn(self._recover_one(other))
        started_at = time.time()
        recording_id = new_recording_id(room_id, started_at)
        directory = self.config.recordings_dir / recording_id
        entries = _present(room, context)
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
            present_at_start=[e.identity for e in entries],
            parts=[Part(index=1, node=self.node_id, started_at=started_at)],
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
        # A new id: nobody else can hold its lease.
        await self.index.acquire_lease(recording_id, self.node_id, self.config.lease_ttl)
        await self.index.put(summarize(manifest))
        self._run(manifest, media_room, room, part=1, offset=0.0)
        logger.info("recording %s of room %s started by %s", recording_id, room_id, started_by)
        info = self.current(room_id)
        assert info is not None
        await self._notify(info)
        return info

    async def resume(
        self,
        recording_id: str,
        media_room: MediaRoom,
        room: Room,
        context: RecordingContext,
        *,
        dead_writer: str | None = None,
    ) -> RecordingInfo:
        """Continue the room's recording in a new part, after its writer died or handed it over.

        The new part writes new files (named ``<track>.p<part>.<ext>``) into the same
        folder, on the recording's clock. The manifest gets the new part and, once the
        previous part's end is known, the gap between the two: at once after a hand-over
        (:meth:`suspend`); after a writer died, when its ``.part`` files have been
        recovered, which runs in the background so the new part starts at once.
        ``on_change`` receives the info (``part`` > 1, ``resumed``).

        ``dead_writer``: the node the caller knows is dead (its room lease expired). If
        that node still holds the recording's writer lease, it is taken over at once
        instead of waiting up to ``lease_ttl`` for it to expire. Only that node's lease is
        taken: a lease held by any other node is refused as below. Should the node be alive
        after all, it stops writing when it next renews its lease.

        Raises:
            RecordingConflict ``recording_elsewhere``: another node holds the writer
                lease (alive, dead but not yet expired, or finalizing the recording).
                Retry after ``lease_ttl`` seconds, or pass ``dead_writer`` if that node
                is known to be dead.
            RecordingConflict ``not_resumable``: the recording has ended (stopped,
                failed, interrupted), or the room no longer claims it (a new recording
                superseded it), or it belongs to another room. Start a new recording.
            RecordingConflict ``already_recording``, ``media_closed``,
                ``recording_unavailable``: as for :meth:`start`.
            RecordingNotFound: no recording has this id.
            ArchiveUnavailable ``archive_unwritable``: the manifest cannot be written;
                nothing was started, the lease is released (retry, or start anew).
        """
        self._check_can_record(room.id, media_room)
        if not is_recording_id(recording_id):
            raise RecordingNotFound("recording_not_found", "no recording has this id")
        self._starting.add(room.id)
        try:
            return await self._resume(recording_id, media_room, room, context, dead_writer)
        finally:
            self._starting.discard(room.id)

    async def _resume(
        self,
        recording_id: str,
        media_room: MediaRoom,
        room: Room,
        context: RecordingContext,
        dead_writer: str | None,
    ) -> RecordingInfo:
        await self._resumable(recording_id, room.id)
        holder = await self.index.acquire_lease(
            recording_id, self.node_id, self.config.lease_ttl, take_over_from=dead_writer
        )
        if holder is not None:
            raise RecordingConflict(
                "recording_elsewhere",
                f"node {holder} still writes recording {recording_id}; retry once its "
                f"lease has expired (within {self.config.lease_ttl:g} s)",
            )
        try:
            # Checked again under the lease: a recovery may have finalized it in between.
            manifest = await self._resumable(recording_id, room.id)
            return await self._begin_part(manifest, media_room, room, context)
        except BaseException:
            await self.index.release_lease(recording_id, self.node_id)
            raise

    async def _resumable(self, recording_id: str, room_id: str) -> Manifest:
        directory = self.config.recordings_dir / recording_id
        manifest = await self._archive_io(read_manifest, directory)
        if manifest is None or manifest.id != recording_id:
            if await self.index.get(recording_id) is None:
                raise RecordingNotFound("recording_not_found", "no recording has this id")
            raise RecordingConflict(
                "not_resumable", f"recording {recording_id} has no readable manifest"
            )
        if manifest.room.id != room_id:
            raise RecordingConflict(
                "not_resumable", f"recording {recording_id} belongs to another session"
            )
        if manifest.state != "recording":
            raise RecordingConflict(
                "not_resumable",
                f"recording {recording_id} has ended ({manifest.state}); start a new one",
            )
        if await self.index.active(room_id) != recording_id:
            raise RecordingConflict(
                "not_resumable",
                f"recording {recording_id} is no longer the session's recording; start a new one",
            )
        return manifest

    async def _begin_part(
        self, manifest: Manifest, media_room: MediaRoom, room: Room, context: RecordingContext
    ) -> RecordingInfo:
        known = {p.identity for p in manifest.participants}
        arrived = [e for e in _present(room, context) if e.identity not in known]
        manifest = begin_part(manifest, self.node_id, time.time())
        manifest = manifest.model_copy(update={"participants": [*manifest.participants, *arrived]})
        part = manifest.parts[-1]
        try:
            await self._io(write_manifest, self.config.recordings_dir / manifest.id, manifest)
        except OSError as exc:
            message = f"the archive folder cannot be written: {exc.strerror or exc}"
            raise ArchiveUnavailable("archive_unwritable", message) from exc
        await self.index.put(summarize(manifest))
        self._orphaned.pop(manifest.id, None)
        # The clock is read again here so the files' offsets count the I/O above.
        active = self._run(
            manifest,
            media_room,
            room,
            part=part.index,
            offset=max(time.time() - manifest.started_at, 0.0),
        )
        if any(p.stopped_at is None for p in manifest.parts[:-1]):
            active.settling = asyncio.create_task(
                self._settle(active), name=f"recording-settle-{manifest.id}"
            )
        logger.info(
            "recording %s of room %s resumed: part %d on %s",
            manifest.id,
            room.id,
            part.index,
            self.node_id,
        )
        info = self._info(manifest, active.recording)
        await self._notify(info)
        return info

    def _run(
        self, manifest: Manifest, media_room: MediaRoom, room: Room, *, part: int, offset: float
    ) -> _Active:
        recording = RoomRecording(
            recording_id=manifest.id,
            room_id=room.id,
            media_room=media_room,
            directory=self.config.recordings_dir / manifest.id,
            executor=self._executor,
            archive_executor=self._archive,
            flush_interval=self.config.flush_interval,
            started_at=manifest.started_at,
            on_failed=self._recording_failed,
            on_room_closed=self._room_closed,
            stop_timeout=self.config.stop_timeout,
            part=part,
            offset=offset,
        )
        active = self._active[room.id] = _Active(recording, manifest, room)
        recording.start()
        self._ensure_lease_task()
        return active

    async def _settle(self, active: _Active) -> None:
        """Recover the earlier parts' files a dead writer left; record where those parts end."""
        manifest = active.manifest
        directory = self.config.recordings_dir / manifest.id
        try:
            files = await self._archive_io(
                self._recover_files, directory, manifest, manifest.parts[-1].index
            )
        except Exception:
            logger.exception("recording %s: the earlier parts' files not recovered", manifest.id)
            return
        settled = close_lost_parts(manifest.model_copy(update={"files": files}), files)
        active.manifest = settled
        try:
            await self._archive_io(write_manifest, directory, settled)
        except OSError as exc:
            # Written again when the part ends; until then a crash recovers them again.
            logger.error("recording %s: manifest not written: %s", manifest.id, exc)
        await self.index.put(summarize(settled))
        logger.info(
            "recording %s: %d files of earlier parts recovered; gaps %s",
            manifest.id,
            len(files),
            [(g.start, g.end) for g in settled.gaps],
        )

    async def suspend(self, room_id: str) -> None:
        """Hand the room's recording over (drain): end this part, keep the recording open.

        The part's files are closed cleanly and listed in the manifest with the part's
        end (reason ``handover``); the state stays ``recording``, the room keeps its
        claim on the recording and the writer lease is released, so the room's next
        owner continues it with :meth:`resume`. Nobody is notified: the recording goes
        on elsewhere. Call it before the media room closes (a closed media room stops
        the recording).

        If the part cannot be closed (a disk error), the recording fails here as it
        would on stop (``on_error``; the claim is released, so a resume answers
        ``not_resumable``). Raises RecordingConflict ``not_recording`` if this process
        does not record the room.
        """
        active = self._active.pop(room_id, None)
        if active is None:
            raise RecordingConflict("not_recording", "this session is not being recorded here")
        files, stopped_at = await self._close_part(active)
        if active.recording.failed is not None:
            await self._finalize(active, files, stopped_at)
            return
        manifest = end_part(active.manifest, stopped_at, "handover")
        manifest = manifest.model_copy(update={"files": [*manifest.files, *files]})
        try:
            await self._io(write_manifest, self.config.recordings_dir / manifest.id, manifest)
        except OSError as exc:
            await self._finalize(active, files, stopped_at, f"manifest not written: {exc}")
            return
        await self.index.put(summarize(manifest))
        await self.index.release_lease(manifest.id, self.node_id)
        logger.info(
            "recording %s of room %s: part %d handed over (%d files)",
            manifest.id,
            room_id,
            manifest.parts[-1].index,
            len(files),
        )

    async def stop(self, room_id: str) -> RecordingInfo:
        """Stop the room's recording: close files, write the manifest, queue the combined video."""
        active = self._active.pop(room_id, None)
        if active is None:
            raise RecordingConflict("not_recording", "this session is not being recorded here")
        return await self._finish(active)

    async def close(self) -> None:
        """Stop every recording (files closed properly) and the background tasks (idempotent).

        To hand recordings over instead (drain), :meth:`suspend` each room first.
        """
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

    async def delete(
        self,
        recording_id: str,
        *,
        by: str = "api",
        operator: str | None = None,
        address: str | None = None,
    ) -> AuditEntry:
        """Delete a recording's files and index entries (not while it records or renders).

        An audit entry naming ``by`` (the credential), the operator and address, and what
        the recording held is written first: no recording goes without one. Returns it.
        """
        summary = await self.summary(recording_id)
        if summary.state == "recording" and (
            await self.index.lease_holder(recording_id) is not None
            or any(a.manifest.id == recording_id for a in self._active.values())
            # Handed over or its writer died: the room's owner may still resume it.
            or await self.index.active(summary.room_id) == recording_id
        ):
            raise RecordingConflict("recording_running", "stop the recording before deleting it")
        render = await self.index.render_status(recording_id)
        if render.state == "running":
            raise RecordingConflict(
                "render_running", "the combined video is being made; retry later"
            )
        try:
            manifest: Manifest | None = await self.manifest(recording_id)
        except RecordingNotFound:
            manifest = None
        files = [] if manifest is None else [*manifest.files]
        deleted = [DeletedFile(name=f.name, size=f.size, sha256=f.sha256) for f in files]
        if manifest is not None and manifest.combined is not None:
            combined = manifest.combined
            deleted.append(
                DeletedFile(name=combined.name, size=combined.size, sha256=combined.sha256)
            )
        entry = AuditEntry(
            action="recording_deleted",
            by=by,
            operator=operator,
            address=address,
            recording_id=recording_id,
            room_id=summary.room_id,
            title=summary.title,
            started_at=summary.started_at,
            duration=summary.duration,
            files=deleted,
            bytes=sum(f.size for f in deleted),
        )
        entry = entry.model_copy(update={"id": await self.audit.append(entry)})
        await self._archive_io(shutil.rmtree, self.directory(recording_id), True)
        await self.index.delete(recording_id)
        await self.moments.remove(recording_id)
        self._manifests.pop(recording_id, None)
        logger.info("recording %s deleted by %s (%s)", recording_id, by, operator or address)
        return entry

    async def export(self, recording_id: str) -> IO[bytes]:
        """The whole record of a stopped recording as a ZIP with SHA256SUMS (an open
        anonymous temporary file; the caller closes it). RecordingConflict while recording."""
        manifest = await self.manifest(recording_id)
        if manifest.stopped_at is None:
            raise RecordingConflict("recording_running", "stop the recording before exporting it")
        # The room's suggestions with their status and reply, while the room is kept.
        kept = await room_suggestions(self.store, manifest.room.id, manifest.started_at)
        return await self._archive_io(
            write_export, manifest, self.directory(recording_id), self.config.recordings_dir, kept
        )

    async def index_moments(self, manifest: Manifest) -> bool:
        """Index a finished recording's moments for search inside sessions (best effort:
        a failure is logged, and the recording is simply not found by its moments)."""
        if manifest.stopped_at is None:
            return False
        try:
            record = session_record(from_manifest(manifest))
            await self.moments.put(manifest.id, manifest.started_at, moments_of(record))
        except Exception:
            logger.exception("recording %s: moments not indexed", manifest.id)
            return False
        return True

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
                await self.delete(recording_id, by="retention")
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

    async def recover(
        self, scan_disk: bool = True, *, now: float | None = None
    ) -> list[RecordingInfo]:
        """Finalize recordings whose writer is gone and that nobody will resume.

        A recording still ``recording`` whose writer lease has expired (its node died,
        or handed it over with :meth:`suspend`) is left alone while the room's owner is
        expected to resume it: the room still claims it and ``resume_expected(room id,
        recording id)`` says yes. It is finalized as ``interrupted`` (``.part`` files
        remuxed, manifest completed, combined video queued) when no ``resume_expected``
        is configured, when it says no, when the room's claim went to another
        recording, or, whatever it says, once ``resume_grace`` seconds have passed since
        this process first found the recording without a writer (or since its last part
        was handed over, if earlier). A ``resume_expected`` that raises counts as yes
        within the grace. Finalizing takes the writer lease first, so it never races a
        resume.

        With ``scan_disk`` (at startup) every folder is looked at: this also repairs
        ``.part`` files of failed recordings and re-indexes finished recordings missing
        from Redis. Without it (the periodic run) only the recordings Redis lists as in
        progress are checked, so a large archive is not read every minute. ``now``
        (wall clock, seconds) stands for the current time (tests of the grace).
        """
        now = time.time() if now is None else now
        if scan_disk:
            folders: list[Path] = await self._archive_io(self._recording_folders)
        else:
            claimed = await self.index.active_recordings()
            folders = [self.config.recordings_dir / rid for rid in claimed if is_recording_id(rid)]
            folders = [f for f in folders if await self._archive_io(f.is_dir)]
        recovered = []
        for directory in folders:
            own = {a.manifest.id for a in self._active.values()} | self._finalizing
            manifest = await self._archive_io(read_manifest, directory)
            if manifest is None or manifest.id != directory.name or manifest.id in own:
                continue
            if manifest.state == "recording":
                if await self.index.lease_holder(manifest.id) is not None:
                    self._orphaned.pop(manifest.id, None)  # being written (again)
                    continue
                if not await self._abandoned(manifest, now):
                    continue
                parts = len(manifest.all_parts())
                info = await self._finalize_orphan(directory, manifest.id, parts)
                if info is not None:
                    recovered.append(info)
            elif manifest.state == "failed":
                leftovers: list[Path] = await self._archive_io(part_files, directory)
                if leftovers:
                    recovered.append(await self._recover(directory, manifest))
            elif await self.index.get(manifest.id) is None:
                await self.index.put(summarize(manifest))
                await self.index_moments(manifest)
            elif not await self.moments.indexed(manifest.id):
                # Finished before moments were indexed (or their indexing failed): now.
                await self.index_moments(manifest)
        return recovered

    async def _abandoned(self, manifest: Manifest, now: float) -> bool:
        """Whether a recording without a writer is to be finalized now (see :meth:`recover`)."""
        room_id, recording_id = manifest.room.id, manifest.id
        if await self.index.active(room_id) != recording_id:
            return True  # superseded: resume would refuse it
        if self.resume_expected is None:
            return True
        since = self._orphaned.setdefault(recording_id, now)
        last = manifest.all_parts()[-1]
        if last.stopped_at is not None:
            since = min(since, last.stopped_at)
        if now - since >= self.config.resume_grace:
            logger.warning(
                "recording %s: nobody resumed it within %g s; finalizing",
                recording_id,
                self.config.resume_grace,
            )
            return True
        try:
            expected = await self.resume_expected(room_id, recording_id)
        except Exception:
            logger.exception(
                "recording %s: resume_expected failed; asking again later", recording_id
            )
            return False
        return not expected

    async def _recover_one(self, recording_id: str) -> None:
        """Finalize a recording whose room claim is being replaced (see :meth:`start`)."""
        if is_recording_id(recording_id):
            await self._finalize_orphan(self.config.recordings_dir / recording_id, recording_id)

    async def _finalize_orphan(
        self, directory: Path, recording_id: str, parts: int | None = None
    ) -> RecordingInfo | None:
        """Finalize a recording left without a writer, holding its lease meanwhile.

        ``parts``: how many parts the recording had when it was judged abandoned; if a
        resume (and a hand-over) added one since, it is left for the next run. None if
        someone else holds the lease (a resume or another node's recovery) or the
        recording is no longer open.
        """
        if await self.index.acquire_lease(recording_id, self.node_id, self.config.lease_ttl):
            return None
        self._finalizing.add(recording_id)
        self._ensure_lease_task()
        try:
            manifest = await self._archive_io(read_manifest, directory)
            if manifest is None or manifest.state != "recording":
                return None
            if parts is not None and len(manifest.all_parts()) != parts:
                return None
            return await self._recover(directory, manifest)
        finally:
            self._finalizing.discard(recording_id)
            self._orphaned.pop(recording_id, None)
            await self.index.release_lease(recording_id, self.node_id)

    async def _recover(self, directory: Path, manifest: Manifest) -> RecordingInfo:
        indexed = await self.index.get(manifest.id)
        failed = manifest.state == "failed" or (indexed is not None and indexed.state == "failed")
        handed_over = manifest.all_parts()[-1].reason == "handover"
        files = await self._archive_io(self._recover_files, directory, manifest)
        closed = close_lost_parts(
            manifest.model_copy(update={"files": files}),
            files,
            last="failed" if failed else "interrupted",
        )
        last_end = closed.all_parts()[-1].stopped_at
        stopped_at = manifest.stopped_at or last_end or manifest.started_at
        error = (manifest.error or (indexed.error if indexed else None)) if failed else None
        final = await self._complete(
            closed,
            files,
            stopped_at=stopped_at,
            state="failed" if failed else "interrupted",
            error=error or (HANDED_OVER_MESSAGE if handed_over else INTERRUPTED_MESSAGE),
            archive=True,
        )
        logger.warning("recording %s recovered (%s): %d files", final.id, final.state, len(files))
        await self._publish(final, error=False)
        return self._info(final, None)

    @staticmethod
    def _recover_files(
        directory: Path, manifest: Manifest, before_part: int | None = None
    ) -> list[FileEntry]:
        """The manifest's files plus those a dead writer left (``.part`` files remuxed).

        With ``before_part``, only files of earlier parts: that part is being written now.
        Files the manifest already lists as finished (a part handed over) are kept as they
        are, without reading them again.
        """
        known: dict[str, FileEntry] = {f.name: f for f in manifest.files}
        finished = {
            f.name
            for f in manifest.files
            if f.sha256 and f.error is None and (directory / f.name).exists()
        }
        for logged in read_track_log(directory):
            part = int(logged.get("part", 1))
            if logged["name"] in known or (before_part is not None and part >= before_part):
                continue
            known[logged["name"]] = FileEntry(
                name=logged["name"],
                participant=str(logged.get("participant", "")),
                kind="video" if logged.get("kind") == "video" else "audio",
                codec=str(logged.get("codec", "")),
                track_id=str(logged.get("track_id", "")),
                start_offset=float(logged.get("start_offset", 0.0)),
                width=logged.get("width"),
                height=logged.get("height"),
                part=part,
            )
        for leftover in part_files(directory):
            name = leftover.name[: -len(PART_SUFFIX)]
            # Not in the log (killed between creating the file and logging it): the name says.
            track_id, part = parse_file_name(name)
            if name in known or (before_part is not None and part >= before_part):
                continue
            video = "-video-" in track_id
            known[name] = FileEntry(
                name=name,
                participant=track_id.rsplit("-", 2)[0],
                kind="video" if video else "audio",
                codec=("vp8" if name.endswith(".webm") else "h264") if video else "opus",
                track_id=track_id,
                start_offset=0.0,
                part=part,
            )
        files = []
        for name, entry in known.items():
            if name in finished:
                files.append(entry)
                continue
            final, part_path = directory / name, directory / (name + PART_SUFFIX)
            if part_path.exists() and not final.exists():
                try:
                    result = remux_part(part_path, final)
                except ValueError as exc:
                    files.append(
                        entry.model_copy(
                            update={
                                "error": f"unrecoverable ({exc}); data kept in {part_path.name}"
                            }
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
        if self._closed:
            return
        if not any(t.get_name() == "recording-leases" and not t.done() for t in self._background):
            self._background.append(
                asyncio.create_task(self._lease_loop(), name="recording-leases")
            )

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_seconds)
            for active in list(self._active.values()):
                try:
                    await self._renew(active)
                except Exception as exc:
                    logger.warning("lease of %s not renewed: %s", active.manifest.id, exc)
            for recording_id in list(self._finalizing):
                try:
                    await self.index.renew_lease(recording_id, self.node_id, self.config.lease_ttl)
                except Exception as exc:
                    logger.warning("lease of %s not renewed: %s", recording_id, exc)

    async def _renew(self, active: _Active) -> None:
        recording_id, room_id = active.manifest.id, active.recording.room_id
        renewal = await self.index.renew_lease(recording_id, self.node_id, self.config.lease_ttl)
        if renewal == "held":
            return
        if renewal == "retaken":
            # It ran out (this loop stalled) and nobody took it: still ours unless a
            # recovery finalized the recording meanwhile (that clears the room's claim).
            if await self.index.active(room_id) == recording_id:
                return
            await self.index.release_lease(recording_id, self.node_id)
        if self._active.get(room_id) is active:
            # Another node resumed or finalized the recording: it owns the manifest now.
            del self._active[room_id]
            logger.error(
                "recording %s: another node took over its writer lease; part %d stops here "
                "(its files are closed; the manifest is the new writer's)",
                recording_id,
                active.recording.part,
            )
            self._spawn(self._close_part(active))

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

    async def _close_part(self, active: _Active) -> tuple[list[FileEntry], float]:
        """Close the part's files (after the earlier parts' recovery); their entries and when."""
        if active.settling is not None:
            await asyncio.gather(active.settling, return_exceptions=True)
        files = await active.recording.stop()
        # When packets stopped being taken, not when the checksums were done.
        return files, active.recording.stopped_at or time.time()

    async def _finish(self, active: _Active) -> RecordingInfo:
        files, stopped_at = await self._close_part(active)
        return await self._finalize(active, files, stopped_at)

    async def _finalize(
        self,
        active: _Active,
        files: list[FileEntry],
        stopped_at: float,
        error: str | None = None,
    ) -> RecordingInfo:
        """Complete and publish the recording whose last part's ``files`` were just closed."""
        failed = active.recording.failed or error
        manifest = end_part(active.manifest, stopped_at, "failed" if failed else "stopped")
        # Earlier parts still open here had their recovery fail: close them as they are.
        manifest = close_lost_parts(manifest, manifest.files)
        final = await self._complete(
            manifest,
            [*manifest.files, *files],
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
        roster = apply_renames(await self._roster(manifest, room), timeline)
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
                "roster": roster or manifest.roster,
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
        await self.index_moments(final)
        await self.index.clear_active(final.room.id, final.id)
        await self.index.release_lease(final.id, self.node_id)
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
        timeline = list(timeline)  # read twice: joins, then renames
        definition = room or await self.store.get_room(manifest.room.id)
        found = {p.identity: p for p in manifest.participants}
        if definition is None:
            return apply_renames(found.values(), timeline)
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
        return apply_renames(found.values(), timeline)

    async def _roster(self, manifest: Manifest, room: Room | None) -> list[ParticipantEntry]:
        """Everyone invited to the session, as the manifest names participants (best effort:
        an unreachable Redis leaves the roster out, and attendance lists no absentees)."""
        definition = room or await self.store.get_room(manifest.room.id)
        if definition is None:
            return []
        try:
            invitees = await self.store.roster(manifest.room.id)
        except Exception as exc:
            logger.warning("recording %s: roster not read (%s)", manifest.id, exc)
            return []
        entries = (
            _participant_entry(definition, invitee.model_dump(mode="json")) for invitee in invitees
        )
        return [e for e in entries if e is not None]

    def _info(
        self,
        manifest: Manifest,
        recording: RoomRecording | None,
        render: RenderStatus | None = None,
    ) -> RecordingInfo:
        part = len(manifest.all_parts())
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
            part=part,
            resumed=part > 1,
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
