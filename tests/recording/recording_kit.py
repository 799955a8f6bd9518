"""Helpers for the recording tests: a media room with aiortc clients, the room in a real Redis,
a RecordingService, and readers that decode what was recorded."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import redis.asyncio as aioredis
from aiortc.mediastreams import MediaStreamTrack

from server.recording.chapters import agenda_chapters, speaker_chapters, speaker_segments
from server.recording.config import RecordingConfig
from server.recording.manifest_files import write_manifest
from server.recording.models import FileEntry, Manifest, ParticipantEntry, RecordingInfo, RoomInfo
from server.recording.service import RecordingService
from server.rooms.models import Participant, Room, TimelineEntry
from server.rooms.ports import RecordingContext
from server.state import keys
from server.state.store import RedisStore
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server
from tests.media.media_testkit import (
    MediaTestClient,
    RoomHarness,
    make_counter_frame,
    read_counter_frame,
)
from tests.processes import REPO

ROOM_ID = "room-1"

ROOM = {
    "id": ROOM_ID,
    "title": "清水塘新城建设专题协商会",
    "topic": "四级联动远程协商",
    "scheduled_start": "2026-12-01T09:00:00+08:00",
    "venues": [
        {"id": "national", "name": "全国政协会场", "level": "national"},
        {"id": "hunan", "name": "湖南省政协主会场", "level": "provincial", "main": True},
        {"id": "zhuzhou", "name": "株洲市政协会场", "level": "city"},
        {"id": "shifeng", "name": "石峰区政协会场", "level": "county"},
    ],
    "agenda": [
        {"title": "开场", "planned_speakers": ["host"]},
        {"title": "协商发言", "planned_speakers": ["m1"]},
    ],
}

PEOPLE = {
    "host": ("主持人甲", "host", "hunan"),
    "m1": ("陈静怡", "member", "shifeng"),
    "m2": ("李明", "member", "zhuzhou"),
    "m3": ("王芳", "member", "national"),
}


async def append_timeline(store: RedisStore, event_type: str, data: dict[str, object]) -> None:
    """Write a timeline entry of the test session, as its owner does (a Redis-assigned id)."""
    client: Any = store.client
    await client.xadd(
        keys.room_timeline(ROOM_ID),
        {"type": event_type, "data": json.dumps(data, ensure_ascii=False)},
    )


def make_room() -> Room:
    """The test session as created by the organizer."""
    return Room.model_validate({**ROOM, "created_at": datetime.now(UTC)})


@dataclass
class RecordingEnv:
    """One media room, its session in Redis, and a recording service writing to ``root``."""

    harness: RoomHarness
    store: RedisStore
    room: Room
    root: Path
    service: RecordingService
    changes: list[RecordingInfo] = field(default_factory=list)
    errors: list[RecordingInfo] = field(default_factory=list)
    #: Who joined, by identity (what the room's owner would pass as the recording context).
    present: dict[str, Participant] = field(default_factory=dict)

    def context(self, floor: str | None = None, agenda_index: int = 0) -> RecordingContext:
        """The session as its owner would describe it to the recorder now."""
        return RecordingContext(floor, agenda_index, list(self.present.values()))

    async def append_timeline(self, event_type: str, data: dict[str, object]) -> None:
        """Write a timeline entry, as the room's owner does (a Redis-assigned id)."""
        await append_timeline(self.store, event_type, data)

    async def join(
        self, identity: str, camera: MediaStreamTrack | None = None, **kwargs: Any
    ) -> MediaTestClient:
        """A participant joins the session (timeline, :meth:`context`) and publishes (media),
        maybe with ``camera``."""
        name, role, venue = PEOPLE[identity]
        self.present[identity] = Participant(
            identity=identity,
            name=name,
            role=role,  # type: ignore[arg-type]
            venue=venue,
            session=f"s-{identity}-{time.monotonic_ns()}",
            node="node-test",
            joined_at=time.time(),
        )
        await self.append_timeline(
            "joined", {"identity": identity, "name": name, "venue": venue, "role": role}
        )
        client = self.harness.client(identity, **kwargs)
        if camera is not None:
            client.video = camera  # type: ignore[assignment]
        await client.join()
        return client

    async def wait(self, predicate: Callable[[], bool], what: str, within: float = 15) -> None:
        """Wait until ``predicate()`` holds (re-checked on media events and every 250 ms)."""
        await self.harness.wait_until(predicate, what, within)

    def recorded_until(self, identity: str, kind: str) -> float:
        """Where the media written so far for ``identity``'s newest track of this kind ends,
        in seconds from the recording's start (media lags the wall clock under load)."""
        recording = self.service.recording(ROOM_ID)
        if recording is None:
            return 0.0
        files = [
            r.file
            for r in recording.recorders.values()
            if r.track.participant_id == identity and r.track.kind == kind and r.file.frames
        ]
        return files[-1].start_offset + files[-1].duration if files else 0.0

    def recorder_frames(self, identity: str, kind: str) -> int:
        """Frames written so far for ``identity``'s newest track of this kind."""
        recording = self.service.recording(ROOM_ID)
        if recording is None:
            return 0
        counts = [
            r.file.frames
            for r in recording.recorders.values()
            if r.track.participant_id == identity and r.track.kind == kind
        ]
        return counts[-1] if counts else 0


@contextlib.asynccontextmanager
async def recording_env(redis_client: Any, root: Path, **config: Any) -> Any:
    """A RecordingEnv, closed (service, media, clients) on exit."""
    store = RedisStore(redis_client)
    room = make_room()
    await store.create_room(room)
    harness = RoomHarness(room_id=ROOM_ID)
    env_changes: list[RecordingInfo] = []
    env_errors: list[RecordingInfo] = []
    service = RecordingService(
        store,
        RecordingConfig(recordings_dir=root, **config),
        node_id="node-test",
        on_change=env_changes.append,
        on_error=env_errors.append,
    )
    env = RecordingEnv(harness, store, room, root, service, env_changes, env_errors)
    try:
        yield env
    finally:
        await service.close()
        await harness.close()


@dataclass
class DecodedTrack:
    """What a recorded file contains, decoded."""

    kind: str
    codec: str
    duration: float
    frames: int
    counters: list[int]
    samples: int
    peak: float


def decode_file(path: Path) -> DecodedTrack:
    """Decode a whole per-track file (video counters, audio samples and peak level)."""
    with av.open(str(path)) as container:
        stream: Any = container.streams[0]
        duration = float(container.duration or 0) / 1_000_000
        counters: list[int] = []
        frames = samples = 0
        peak = 0.0
        for frame in container.decode(stream):
            frames += 1
            if stream.type == "video":
                counters.append(read_counter_frame(frame)[1])
            else:
                samples += frame.samples
                array = frame.to_ndarray()
                peak = max(peak, float(abs(array).max()) if array.size else 0.0)
        return DecodedTrack(
            stream.type, stream.codec_context.name, duration, frames, counters, samples, peak
        )


def counter_jumps(counters: list[int]) -> list[tuple[int, int]]:
    """Places where the frame counter does not advance by exactly one."""
    return [(a, b) for a, b in itertools.pairwise(counters) if b != a + 1]


async def wait_for(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Poll a condition that has no event (files, processes) until it holds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_lease_expiry(client: aioredis.Redis, recording_id: str) -> None:
    """The lease has a TTL of one second in the child; wait for Redis to expire it."""
    async with asyncio.timeout(5):
        while await client.exists(keys.recording_lease(recording_id)):
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def recording_server(data_dir: Path, redis_url: str) -> AsyncIterator[ServerHandle]:
    """A test server whose archive is `data_dir/recordings`, kept 30 days, with no auto-render."""
    config = RecordingConfig(
        recordings_dir=data_dir / "recordings", retention_days=30, auto_render=False
    )
    async with run_server(data_dir, free_port(), redis_url, recording_config=config) as server:
        yield server


def build_session(directory: Path, seconds: float, recording_id: str) -> Manifest:
    """A finished recording folder made without media: the host and m1 each with a counter
    video (160x120 VP8) and a tone (Opus); m1 holds the floor in the middle third."""
    directory.mkdir(parents=True)
    room = make_room()
    started_at = time.time() - seconds - 5
    files: list[FileEntry] = []
    participants: list[ParticipantEntry] = []
    for index, identity in enumerate(("host", "m1")):
        name, role, venue_id = PEOPLE[identity]
        venue = room.venue(venue_id)
        assert venue is not None
        participants.append(
            ParticipantEntry(
                identity=identity,
                name=name,
                role=role,
                venue=venue_id,
                venue_name=venue.name,
                level=venue.level,
            )
        )
        video, audio = (
            f"{identity}-video-{index * 2 + 2}.webm",
            f"{identity}-audio-{index * 2 + 1}.webm",
        )
        with av.open(str(directory / video), "w", format="webm") as container:
            stream = container.add_stream("libvpx", rate=30)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            for n in range(int(seconds * 30)):
                frame = make_counter_frame(index + 1, n, 160, 120)
                frame.pts = n
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        with av.open(str(directory / audio), "w", format="webm") as container:
            stream = container.add_stream("libopus", rate=48000, layout="stereo")
            for start in range(0, int(seconds * 48000), 960):
                tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(start, start + 960) / 48000)
                samples = tone.astype(np.float32)
                frame = av.AudioFrame.from_ndarray(
                    np.stack([samples, samples]), format="fltp", layout="stereo"
                )
                frame.sample_rate, frame.pts = 48000, start
                frame.time_base = fractions.Fraction(1, 48000)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        for file_name, kind, codec in ((video, "video", "vp8"), (audio, "audio", "opus")):
            path = directory / file_name
            files.append(
                FileEntry(
                    name=file_name,
                    participant=identity,
                    kind=kind,  # type: ignore[arg-type]
                    codec=codec,
                    track_id=file_name.removesuffix(".webm"),
                    start_offset=0.0,
                    duration=seconds,
                    size=path.stat().st_size,
                )
            )
    third = seconds / 3
    timeline = [
        TimelineEntry(
            id=f"{int((started_at + at) * 1000)}-0",
            ts=int((started_at + at) * 1000),
            type=kind,
            data=data,
        )
        for at, kind, data in (
            (third, "floor_granted", {"identity": "m1", "name": "陈静怡"}),
            (2 * third, "agenda_advanced", {"index": 1, "title": "协商发言"}),
            (2 * third + 0.01, "floor_revoked", {"identity": "m1"}),
        )
    ]
    segments = speaker_segments(
        timeline, started_at=started_at, duration=seconds, initial_floor=None
    )
    names = {p.identity: p.name for p in participants}
    chapters = agenda_chapters(
        timeline,
        started_at=started_at,
        duration=seconds,
        initial_index=0,
        agenda=[item.title for item in room.agenda],
    ) + speaker_chapters(segments, names)
    manifest = Manifest(
        id=recording_id,
        state="stopped",
        complete=True,
        room=RoomInfo.of(room),
        started_at=started_at,
        stopped_at=started_at + seconds,
        duration=seconds,
        started_by="api",
        node="node-test",
        host="host",
        participants=participants,
        files=files,
        timeline=timeline,
        chapters=sorted(chapters, key=lambda c: (c.start, c.kind)),
        speakers=segments,
    )
    write_manifest(directory, manifest)
    return manifest


# --- the render worker ----------------------------------------------------------------


async def start_worker(redis_url: str, queue: str) -> asyncio.subprocess.Process:
    """A render worker process that works ``queue`` until it is empty (``--burst``)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.recording.worker",
        "--redis-url",
        redis_url,
        "--queue",
        queue,
        "--burst",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def render_state(client: aioredis.Redis, recording_id: str) -> dict[str, str]:
    """The render hash of a recording, decoded."""
    raw = await client.hgetall(keys.recording_render(recording_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def wait_render(
    client: aioredis.Redis, recording_id: str, states: set[str], within: float
) -> dict[str, str]:
    """Poll the render hash (written by another process) until it reaches one of ``states``."""
    async with asyncio.timeout(within):
        while True:
            state = await render_state(client, recording_id)
            if state.get("state") in states and state.get("pid"):
                return state
            await asyncio.sleep(0.02)


def shown_counter(frame: av.VideoFrame) -> tuple[int, int]:
    """The (sender, counter) shown in the speaker view (the video area, caption left aside)."""
    rgb = frame.to_ndarray(format="rgb24")
    height, width = rgb.shape[:2]
    video_width = height * 4 // 3  # the 4:3 camera, pillarboxed and centred
    left = (width - video_width) // 2
    crop = np.ascontiguousarray(rgb[:, left : left + video_width])
    return read_counter_frame(av.VideoFrame.from_ndarray(crop, format="rgb24"))


def shown_sender(frame: av.VideoFrame) -> int:
    """The counter's sender index in the speaker view."""
    return shown_counter(frame)[0]
