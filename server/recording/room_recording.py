"""One room's recording in progress: a TrackRecorder per published track, one writer pass at a time.

A periodic pass (every ``flush_interval`` seconds) runs on the event loop:
it attaches recorders to tracks that appeared, asks for keyframes where a
file waits for one, takes each recorder's buffered packets, and hands them to
the service's writer thread pool in one job. The next pass starts only after
that job is done, so a recording's files are only ever touched by one thread
and a slow disk delays the recording, never the forwarding (recorders buffer,
then drop and resume at a keyframe).

An ``OSError`` in the writer (disk full, folder gone, I/O error) fails the
whole recording: the recorders detach, the files stay as ``.part`` for
recovery, and the owner's ``on_failed`` callback is told. Any other error
only ends the one track's file. A recorder whose ``on_packet`` failed (it
never raises into the media layer, see ``track_recorder``) fails the whole
recording the same way, on the next pass or on stop.

Checksums of the finished files (on stop) run on the ``archive_executor``,
so hashing a long recording never holds a writer thread other rooms need.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from aiortc.rtp import RtpPacket

from server.media import MediaError, MediaRoom, TrackForwarder

from .models import FileEntry
from .recovery import sha256_file
from .track_recorder import TrackRecorder

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Keyframe requests for a file still waiting for one are repeated this often (seconds).
KEYFRAME_RETRY = 1.0

FailureCallback = Callable[["RoomRecording", str], Awaitable[None]]
Work = tuple[TrackRecorder, list[tuple[RtpPacket, float]]]
ClosedCallback = Callable[["RoomRecording"], Awaitable[None]]


class RoomRecording:
    """The files being written for one room (created and driven by RecordingService)."""

    def __init__(
        self,
        *,
        recording_id: str,
        room_id: str,
        media_room: MediaRoom,
        directory: Path,
        executor: concurrent.futures.Executor,
        flush_interval: float,
        started_at: float,
        on_failed: FailureCallback,
        on_room_closed: ClosedCallback,
        stop_timeout: float = 60.0,
        archive_executor: concurrent.futures.Executor | None = None,
        part: int = 1,
        offset: float = 0.0,
    ) -> None:
        self.recording_id = recording_id
        self.room_id = room_id
        self.media_room = media_room
        self.directory = directory
        self.started_at = started_at
        #: Which part of the recording this is (its files are named after it).
        self.part = part
        #: The monotonic clock reading that is time 0 of every file's offsets: the
        #: recording's start, ``offset`` seconds ago for a resumed part (so every part's
        #: files sit on the one clock of the recording).
        self.clock_start = time.monotonic() - offset
        self._executor = executor
        self._archive_executor = archive_executor or executor
        self._flush_interval = flush_interval
        self._on_failed = on_failed
        self._on_room_closed = on_room_closed
        self._stop_timeout = stop_timeout
        self.recorders: dict[str, TrackRecorder] = {}
        self._forwarders: dict[str, TrackForwarder] = {}
        self._keyframe_asked: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        #: When :meth:`stop` stopped taking packets (wall clock): where the part ends.
        self.stopped_at: float | None = None
        self.passes = 0
        #: Set after every writer pass (tests and benchmarks wait on it).
        self.pass_done = asyncio.Condition()

    def __repr__(self) -> str:
        part = f" part {self.part}" if self.part > 1 else ""
        return f"RoomRecording({self.recording_id}{part}, {len(self.recorders)} tracks)"

    @property
    def elapsed(self) -> float:
        """Seconds since the recording started."""
        return time.monotonic() - self.clock_start

    def start(self) -> None:
        """Attach to the room's current tracks and start the writer passes."""
        self.sync_tracks()
        self._task = asyncio.create_task(self._run(), name=f"recording-{self.recording_id}")

    def sync_tracks(self) -> None:
        """Attach a recorder to every track not recorded yet (call on TracksChanged; idempotent)."""
        if self._stop.is_set() or self.failed is not None or self.media_room.closed:
            return
        for track in self.media_room.tracks():
            if track.track_id in self.recorders:
                continue
            try:
                forwarder = self.media_room.track_forwarder(track.track_id)
            except MediaError:
                continue  # ended meanwhile
            if forwarder.ended:
                continue
            try:
                recorder = TrackRecorder(
                    track,
                    clock_rate=forwarder.codec.clockRate,
                    directory=self.directory,
                    clock_start=self.clock_start,
                    part=self.part,
                )
            except ValueError as exc:
                logger.warning("%r: cannot record %s: %s", self, track.track_id, exc)
                continue
            self.recorders[track.track_id] = recorder
            self._forwarders[track.track_id] = forwarder
            forwarder.attach(recorder)
            logger.info("%r: recording %s into %s", self, track.track_id, recorder.file.name)
            if track.kind == "video":
                self._keyframe_asked[track.track_id] = time.monotonic()
                forwarder.request_keyframe()

    async def stop(self) -> list[FileEntry]:
        """Stop taking packets, write what is buffered, close every file; return their entries."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._detach_all()
        self.stopped_at = time.time()
        work = [(r, r.take()) for r in self.recorders.values()]
        broken = self._sink_failure()
        if broken is not None:
            await self._fail(broken)
        if self.failed is None:
            try:
                await asyncio.wait_for(self._in_writer(self._final_pass, work), self._stop_timeout)
            except OSError as exc:
                await self._fail(f"{type(exc).__name__}: {exc}")
            except TimeoutError:
                # The disk does not answer; the thread finishes (or not) on its own.
                self.failed = f"the disk did not answer within {self._stop_timeout:.0f} s"
                logger.error("%r: %s", self, self.failed)
                return [r.entry() for r in self.recorders.values()]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._archive_executor, self._entries)

    # --- internals ------------------------------------------------------------------------

    async def _in_writer(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self._flush_interval)
                return
            except TimeoutError:
                pass
            if self.media_room.closed:
                await self._on_room_closed(self)
                return
            broken = self._sink_failure()
            if broken is not None:
                await self._fail(broken)
                return
            self.sync_tracks()
            self._ask_keyframes()
            work = [(r, r.take()) for r in self.recorders.values() if not r.finished]
            ended = [r for r in self.recorders.values() if r.ended and not r.finished]
            try:
                await self._in_writer(self._pass, work, ended)
            except OSError as exc:
                await self._fail(f"{type(exc).__name__}: {exc}")
                return
            except Exception:
                logger.exception("%r: writer pass failed", self)
            self._detach_broken()
            self.passes += 1
            async with self.pass_done:
                self.pass_done.notify_all()

    def _sink_failure(self) -> str | None:
        for recorder in self.recorders.values():
            if recorder.sink_error is not None:
                return f"recorder of {recorder.track.track_id} failed: {recorder.sink_error}"
        return None

    def _ask_keyframes(self) -> None:
        now = time.monotonic()
        for track_id, recorder in self.recorders.items():
            if not recorder.wants_keyframe or recorder.ended:
                continue
            if now - self._keyframe_asked.get(track_id, 0.0) >= KEYFRAME_RETRY:
                self._keyframe_asked[track_id] = now
                self._forwarders[track_id].request_keyframe()

    def _detach_broken(self) -> None:
        for track_id, recorder in self.recorders.items():
            if recorder.error is not None and not recorder.detached:
                recorder.detached = True
                self._forwarders[track_id].detach(recorder)

    def _detach_all(self) -> None:
        for track_id, recorder in self.recorders.items():
            recorder.detached = True
            self._forwarders[track_id].detach(recorder)
        # Forwarders live as long as their publisher; drop our references to them.
        self._forwarders = {t: f for t, f in self._forwarders.items() if not f.ended}

    async def _fail(self, message: str) -> None:
        if self.failed is not None:
            return
        self.failed = message
        logger.error("%r: recording failed: %s", self, message)
        self._stop.set()
        self._detach_all()
        await self._in_writer(self._abandon_all, message)
        await self._on_failed(self, message)

    # --- writer thread --------------------------------------------------------------------

    @staticmethod
    def _pass(work: list[Work], ended: list[TrackRecorder]) -> None:
        for recorder, batch in work:
            if recorder.finished:
                continue
            try:
                recorder.write(batch)
            except OSError:
                raise
            except Exception as exc:
                logger.exception("%r: track failed", recorder)
                recorder.abandon(f"{type(exc).__name__}: {exc}")
        for recorder in ended:
            if recorder.finished:
                continue
            try:
                recorder.finish()
            except OSError:
                raise
            except Exception as exc:
                logger.exception("%r: closing failed", recorder)
                recorder.abandon(f"{type(exc).__name__}: {exc}")

    @classmethod
    def _final_pass(cls, work: list[Work]) -> None:
        cls._pass(work, [r for r, _ in work])

    def _abandon_all(self, message: str) -> None:
        for recorder in self.recorders.values():
            if not recorder.finished:
                recorder.abandon(message)
            elif recorder.error is None and not recorder.file.path.exists():
                recorder.error = message

    def _entries(self) -> list[FileEntry]:
        entries = []
        for recorder in self.recorders.values():
            entry = recorder.entry()
            path = recorder.file.path
            part = recorder.file.part_path
            if path.exists() and entry.error is None:
                entry = entry.model_copy(
                    update={"size": path.stat().st_size, "sha256": sha256_file(path)}
                )
            elif part.exists():
                reason = entry.error or "not closed"
                entry = entry.model_copy(
                    update={"error": f"{reason}; partial data kept in {part.name}"}
                )
            elif entry.frames == 0:
                continue  # nothing was ever received for this track: no file, no entry
            else:
                entry = entry.model_copy(update={"error": entry.error or "file missing"})
            entries.append(entry)
        return entries
