"""A recording survives its node: resumed in a new part after kill -9 or a drain, with the gap
in the manifest, and the background recovery leaves it to the room's next owner meanwhile.

The first writer is a real recording (a killed process, or a service that hands over); the
next owner is another RecordingService with its own MediaRoom and real aiortc publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import redis.asyncio as aioredis

from server.recording.compositor import RenderOptions, render_recording
from server.recording.config import RecordingConfig
from server.recording.errors import RecordingConflict, RecordingNotFound
from server.recording.jobs import RenderQueue
from server.recording.manifest_files import read_manifest
from server.recording.models import COMBINED_NAME, FileEntry, Manifest, RecordingInfo
from server.recording.recovery import sha256_file
from server.recording.room_recorder import RoomRecorder
from server.recording.service import HANDED_OVER_MESSAGE, RecordingService
from server.recording.track_recorder import file_name_for, parse_file_name
from server.state.nodes import NodeInfo
from server.state.store import RedisStore
from tests.media.media_testkit import CounterVideoTrack, RoomHarness
from tests.processes import REPO
from tests.recording.recording_kit import (
    ROOM_ID,
    RecordingEnv,
    append_timeline,
    counter_jumps,
    decode_file,
    make_room,
    shown_sender,
    start_worker,
    wait_for,
    wait_for_lease_expiry,
    wait_render,
)

#: The sender index of the host's camera on the next owner (1 on the first): the combined
#: video shows which part a frame comes from.
NEXT_CAMERA = 5


@contextlib.asynccontextmanager
async def next_owner(
    redis_client: aioredis.Redis, root: Path, node_id: str, **options: Any
) -> AsyncIterator[RecordingEnv]:
    """The node that takes the room over: its own media room and recording service.

    The session itself is already in Redis (created by the first owner).
    """
    store = RedisStore(redis_client)
    harness = RoomHarness(room_id=ROOM_ID)
    config = {"auto_render": False, **options.pop("config", {})}
    changes: list[RecordingInfo] = []
    errors: list[RecordingInfo] = []
    service = RecordingService(
        store,
        RecordingConfig(recordings_dir=root, **config),
        node_id=node_id,
        on_change=changes.append,
        on_error=errors.append,
        **options,
    )
    try:
        yield RecordingEnv(harness, store, make_room(), root, service, changes, errors)
    finally:
        await service.close()
        await harness.close()


def files_of_part(manifest: Manifest, part: int) -> dict[str, FileEntry]:
    """The files one part of the recording wrote, by name."""
    return {f.name: f for f in manifest.files if f.part == part}


def check_files(folder: Path, manifest: Manifest) -> None:
    """Every listed file is finished, matches its checksum, plays, and has no lost frame."""
    for entry in manifest.files:
        path = folder / entry.name
        assert not path.with_name(entry.name + ".part").exists(), entry.name
        assert entry.error is None and entry.sha256 == sha256_file(path), entry.name
        decoded = decode_file(path)
        assert abs(decoded.duration - entry.duration) < 0.1, (entry.name, decoded.duration)
        if entry.kind == "video":
            assert counter_jumps(decoded.counters) == [] and decoded.frames >= 20, entry.name
        else:
            assert decoded.peak > 0.05, f"{entry.name} is silent"


def check_covers(manifest: Manifest) -> None:
    """Speaker segments and agenda chapters each cover the whole recording, gap included."""
    segments = manifest.speakers
    assert segments[0].start == 0 and segments[-1].end == manifest.duration
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    agenda = [c for c in manifest.chapters if c.kind == "agenda"]
    assert agenda[0].start == 0 and agenda[-1].end == manifest.duration
    assert all(a.end == b.start for a, b in itertools.pairwise(agenda))


async def test_killed_writer_resumed_by_the_next_owner_then_rendered(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    store = RedisStore(redis_client)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.recording.crash_recorder",
        redis_url,
        str(root),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert child.stdout is not None
    try:
        async with asyncio.timeout(30):
            recording_id = json.loads(await child.stdout.readline())["recording"]
            while int(await child.stdout.readline()) < 45:  # 1.5 s of video written
                pass
            # The agenda moves on during the first part: the timeline is the room's.
            await append_timeline(store, "agenda_advanced", {"index": 1, "title": "协商发言"})
            while int(await child.stdout.readline()) < 100:
                pass
    finally:
        child.kill()  # SIGKILL: the node dies with its media room
        await child.wait()
    killed_at = time.time()
    # The lease was renewed at most 0.2 s before the kill and lasts 1 s: a gap of ~1 s at least.
    await wait_for_lease_expiry(redis_client, recording_id)

    queue_name = f"render-test-{os.getpid()}-{time.monotonic_ns()}"
    render_queue = RenderQueue(redis_url, queue_name=queue_name)
    worker = None
    try:
        async with next_owner(
            redis_client,
            root,
            "node-b",
            render_queue=render_queue,
            config={"auto_render": True},
        ) as owner:
            host = await owner.join("host", CounterVideoTrack(NEXT_CAMERA), amplitude=0.3)
            await owner.wait(lambda: host.video is not None and host.video.sent > 10, "publishing")
            resumed_from = time.time()
            info = await owner.service.resume(
                recording_id, owner.harness.room, owner.room, owner.context()
            )
            assert info.state == "recording" and info.part == 2 and info.resumed
            assert owner.changes == [info]  # the host is told
            await owner.wait(lambda: owner.recorder_frames("host", "video") >= 30, "part 2: 1 s")
            await append_timeline(store, "floor_granted", {"identity": "host", "name": "主持人甲"})
            await owner.wait(lambda: owner.recorder_frames("host", "video") >= 75, "part 2: 2.5 s")
            final = await owner.service.stop(ROOM_ID)
            assert final.state == "stopped" and final.complete and final.part == 2
            assert final.render.state == "queued"
            summary = await owner.service.index.get(recording_id)

        folder = root / recording_id
        manifest = read_manifest(folder)
        assert manifest is not None and manifest.state == "stopped"
        assert [(p.index, p.node, p.reason) for p in manifest.parts] == [
            (1, "node-test", "writer_lost"),
            (2, "node-b", "stopped"),
        ]
        first, second = files_of_part(manifest, 1), files_of_part(manifest, 2)
        assert set(first) == {"host-audio-1.webm", "host-video-2.webm"}
        assert set(second) == {"host-audio-1.p2.webm", "host-video-2.p2.webm"}
        assert all(f.recovered for f in first.values())
        assert not any(f.recovered for f in second.values())
        assert not list(folder.glob("*.part"))
        check_files(folder, manifest)

        # The gap: from where the dead writer's media ends to the new part's start.
        (gap,) = manifest.gaps
        assert gap.reason == "writer_lost"
        assert gap.start == round(max(f.start_offset + f.duration for f in first.values()), 3)
        assert gap.start <= killed_at - manifest.started_at
        # 100 frames had been written; clusters close every second: at most ~1 s is lost.
        assert next(f for f in first.values() if f.kind == "video").duration >= 2.0
        assert gap.end == round(manifest.parts[1].started_at - manifest.started_at, 3)
        assert resumed_from - manifest.started_at - 0.001 <= gap.end
        # Dead for the rest of its lease (>= 0.8 s) and while the publisher rejoined.
        assert gap.end - gap.start >= 0.8
        # Offsets estimate capture times: packets in flight at the part's start may come first.
        assert all(f.start_offset >= gap.end - 0.5 for f in second.values()), (gap, second)
        assert summary is not None and summary.parts == 2 and summary.gaps == manifest.gaps

        # Chapters and who is on screen cover the whole recording, across the gap.
        check_covers(manifest)
        assert manifest.stopped_at is not None
        assert manifest.duration == round(manifest.stopped_at - manifest.started_at, 3)
        assert max(f.start_offset + f.duration for f in manifest.files) <= manifest.duration + 0.15
        # The agenda moved on while the first writer lived (its media may lag behind, so
        # the change can fall in the gap); the item's chapter runs across the gap to the end.
        agenda = [(c.title, c.start) for c in manifest.chapters if c.kind == "agenda"]
        assert [title for title, _ in agenda] == ["开场", "协商发言"] and agenda[1][1] < gap.end
        speakers = [(c.identity, c.start) for c in manifest.chapters if c.kind == "speaker"]
        assert len(speakers) == 1 and speakers[0][0] == "host" and speakers[0][1] > gap.end

        # The combined video lasts the whole recording; silence in the gap, sound after it.
        worker = await start_worker(redis_url, queue_name)
        done = await wait_render(redis_client, recording_id, {"done", "failed"}, within=120)
        assert done["state"] == "done", done
        assert await asyncio.wait_for(worker.wait(), 30) == 0
        check_render(folder / COMBINED_NAME, manifest, first, second)
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            await worker.wait()
        render_queue.close()


def check_render(
    path: Path, manifest: Manifest, first: dict[str, FileEntry], second: dict[str, FileEntry]
) -> None:
    """The whole recording, sound where each part's audio is and silence between them."""
    audio1 = next(f for f in first.values() if f.kind == "audio")
    audio2 = next(f for f in second.values() if f.kind == "audio")
    end1 = audio1.start_offset + audio1.duration
    windows = {
        "before": (end1 - 0.8, end1 - 0.2),
        "gap": (end1 + 0.1, audio2.start_offset - 0.1),
        "after": (audio2.start_offset + 0.2, audio2.start_offset + 1.0),
    }
    assert windows["gap"][1] - windows["gap"][0] >= 0.3, windows
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / 1_000_000
        assert duration == pytest.approx(manifest.duration, abs=0.1)
        peaks = dict.fromkeys(windows, 0.0)
        for frame in container.decode(audio=0):
            at = float(frame.time)
            for name, (low, high) in windows.items():
                if low <= at <= high:
                    peaks[name] = max(peaks[name], float(np.abs(frame.to_ndarray()).max()))
        assert peaks["before"] > 0.1 and peaks["after"] > 0.1, peaks
        assert peaks["gap"] < 0.01, peaks
    check_shown_after_gap(path, next(f for f in second.values() if f.kind == "video"))


def check_shown_after_gap(path: Path, video2: FileEntry, after: float = 0.3) -> None:
    """Just after the gap the new part's camera is shown, not the old part's last frame
    (which is less than 1.5 s old there when the gap is short)."""
    probe = video2.start_offset + after
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if float(frame.time) >= probe:
                assert shown_sender(frame) == NEXT_CAMERA
                return
    raise AssertionError("no frame after the gap")


async def test_drain_hands_the_recording_over_to_the_next_owner(
    env: RecordingEnv, redis_client: aioredis.Redis
) -> None:
    host = await env.join("host", amplitude=0.3)
    await env.wait(lambda: host.video is not None and host.video.sent > 10, "publishing")
    info = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    await env.wait(lambda: env.recorder_frames("host", "video") >= 30, "part 1: 1 s")
    folder = env.root / info.id
    async with next_owner(redis_client, env.root, "node-b") as owner:
        # The host's client is already connected to the next owner's media when we drain.
        moved = await owner.join("host", CounterVideoTrack(NEXT_CAMERA), amplitude=0.3)
        await owner.wait(lambda: moved.video is not None and moved.video.sent > 10, "moved")
        suspending = time.time()
        await env.service.suspend(ROOM_ID)
        # Only quick checks until the resume: the gap is measured.
        handed = read_manifest(folder)
        handover_claim = await env.service.index.active(ROOM_ID)
        handover_lease = await env.service.index.lease_holder(info.id)
        resumed = await owner.service.resume(
            info.id, owner.harness.room, owner.room, owner.context()
        )
        resumed_by = time.time()

        assert [c.state for c in env.changes] == ["recording"]  # nobody is told it stopped
        assert handover_claim == info.id and handover_lease is None
        assert handed is not None and handed.state == "recording"
        (part,) = handed.parts
        assert part.reason == "handover" and part.stopped_at is not None
        assert set(files_of_part(handed, 1)) == {"host-audio-1.webm", "host-video-2.webm"}
        check_files(folder, handed)
        assert not env.service.is_recording(ROOM_ID)

        assert resumed.part == 2 and resumed.resumed and owner.changes == [resumed]
        # A hand-over's gap is known at once.
        now = read_manifest(folder)
        assert now is not None and [g.reason for g in now.gaps] == ["handover"]
        await owner.wait(lambda: owner.recorder_frames("host", "video") >= 30, "part 2: 1 s")
        final = await owner.service.stop(ROOM_ID)

    assert final.state == "stopped" and final.complete and final.part == 2
    manifest = read_manifest(folder)
    assert manifest is not None
    assert [(p.node, p.reason) for p in manifest.parts] == [
        ("node-test", "handover"),
        ("node-b", "stopped"),
    ]
    assert not any(f.recovered for f in manifest.files) and len(manifest.files) == 4
    assert not list(folder.glob("*.part"))
    check_files(folder, manifest)
    check_covers(manifest)
    (gap,) = manifest.gaps
    # The gap is exactly the hand-over: from the old part's end to the new part's start.
    assert suspending - manifest.started_at - 0.001 <= gap.start <= gap.end
    assert gap.end <= resumed_by - manifest.started_at + 0.001
    assert gap.end - gap.start < 2.0
    # Part 1's media runs up to the hand-over (a publisher under load may lag behind a little).
    first_end = max(f.start_offset + f.duration for f in files_of_part(manifest, 1).values())
    assert gap.start - 1.5 <= first_end <= gap.start + 0.15
    second = files_of_part(manifest, 2).values()
    # A file's offset estimates when its first frame was captured: a publisher that lags
    # behind (as part 1's end allows, by up to 1.5 s) sends frames captured before the gap
    # ended after the new part began, so the same lag is allowed here.
    assert all(gap.end - 1.5 <= f.start_offset <= gap.end + 5.0 for f in second), (
        gap,
        [(f.name, f.start_offset) for f in second],
    )

    # The combined video (made here, small): the whole recording, the new camera after the gap.
    rendered = await asyncio.to_thread(
        render_recording, folder, RenderOptions(width=480, height=270, fps=25)
    )
    assert rendered.combined is not None
    assert rendered.combined.duration == pytest.approx(manifest.duration, abs=0.1)
    check_shown_after_gap(folder / COMBINED_NAME, next(f for f in second if f.kind == "video"))


async def test_resume_refuses_ended_recordings_and_live_writers(
    env: RecordingEnv, redis_client: aioredis.Redis
) -> None:
    await env.join("host")
    ended = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    await env.service.stop(ROOM_ID)
    async with next_owner(redis_client, env.root, "node-b") as owner:
        resume_args = (owner.harness.room, owner.room, owner.context())
        with pytest.raises(RecordingConflict) as refused:
            await owner.service.resume(ended.id, *resume_args)
        assert refused.value.code == "not_resumable"
        with pytest.raises(RecordingNotFound):
            await owner.service.resume("room-1-20990101-000000-abcd", *resume_args)

        live = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
        await env.wait(lambda: env.recorder_frames("host", "video") >= 15, "recording")
        for dead_writer in (None, "node-gone"):  # only the named dead node's lease is taken
            with pytest.raises(RecordingConflict) as refused:
                await owner.service.resume(live.id, *resume_args, dead_writer=dead_writer)
            assert refused.value.code == "recording_elsewhere"
            assert "node-test" in refused.value.message
        assert not owner.service.is_recording(ROOM_ID) and owner.changes == []
        assert env.service.is_recording(ROOM_ID)
        assert await owner.service.index.lease_holder(live.id) == "node-test"

        # The caller says node-test is dead (it is not): the lease is taken over, and
        # node-test stops writing when it next renews it (every 2 s here).
        taken = await owner.service.resume(live.id, *resume_args, dead_writer="node-test")
        assert taken.part == 2
        await wait_for(lambda: not env.service.is_recording(ROOM_ID), "node-test stops", 10)
        assert await owner.service.index.lease_holder(live.id) == "node-b"
        assert [c.state for c in env.changes] == ["recording", "stopped", "recording"]
        final = await owner.service.stop(ROOM_ID)
        assert final.state == "stopped" and final.part == 2


async def test_the_room_recorder_takes_over_the_lease_of_a_dead_node(
    env: RecordingEnv, redis_client: aioredis.Redis
) -> None:
    # The room's owner resumes after a failover without naming the dead node (the port
    # does not carry it): the node's expired heartbeat says it is dead.
    await env.join("host")
    live = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    await env.wait(lambda: env.recorder_frames("host", "video") >= 15, "recording")
    writer = NodeInfo(
        id="node-test", url="http://127.0.0.1:1", hostname="h", pid=1, started_at=time.time()
    )
    await env.store.heartbeat_node(writer, ttl_seconds=60)
    async with next_owner(redis_client, env.root, "node-b") as owner:
        recorder = RoomRecorder(owner.service)
        args = (live.id, owner.room, owner.harness.room, owner.context())
        with pytest.raises(RecordingConflict) as refused:  # alive: its lease stands
            await recorder.resume(*args)
        assert refused.value.code == "recording_elsewhere"
        assert env.service.is_recording(ROOM_ID)

        await env.store.remove_node(writer.id)  # its heartbeat is gone
        update = await recorder.resume(*args)
        assert update.id == live.id and update.part == 2 and update.resumed
        await wait_for(lambda: not env.service.is_recording(ROOM_ID), "node-test stops", 10)
        assert (await recorder.stop(ROOM_ID)).state == "stopped"


async def test_recovery_leaves_a_recording_to_the_owner_who_will_resume_it(
    env: RecordingEnv, redis_client: aioredis.Redis
) -> None:
    await env.join("host", amplitude=0.3)
    first = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    await env.wait(lambda: env.recorder_frames("host", "video") >= 15, "recording")
    await env.service.suspend(ROOM_ID)

    asked: list[tuple[str, str]] = []
    answers: list[bool | Exception] = []

    async def resume_expected(room_id: str, recording_id: str) -> bool:
        asked.append((room_id, recording_id))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with next_owner(
        redis_client,
        env.root,
        "node-b",
        resume_expected=resume_expected,
        config={"resume_grace": 60.0},
    ) as other:
        service = other.service
        # The owner will resume it: neither the periodic run nor a startup scan touch it,
        # nor does a failing predicate (no answer is not "no").
        answers[:] = [True, True, RuntimeError("the owner's snapshot is unreadable")]
        assert await service.recover(scan_disk=False) == []
        assert await service.recover() == []
        assert await service.recover(scan_disk=False) == []
        assert asked == [(ROOM_ID, first.id)] * 3
        kept = read_manifest(env.root / first.id)
        assert kept is not None and kept.state == "recording"
        assert await service.index.active(ROOM_ID) == first.id

        # Past the grace nobody came back: finalized, whatever the owner says.
        answers[:] = [True]
        (finalized,) = await service.recover(scan_disk=False, now=time.time() + 61)
        assert finalized.id == first.id and finalized.state == "interrupted"
        assert len(asked) == 3 and answers == [True]  # not even asked
        manifest = read_manifest(env.root / first.id)
        assert manifest is not None and manifest.state == "interrupted"
        assert manifest.error == HANDED_OVER_MESSAGE and manifest.parts[0].reason == "handover"
        assert manifest.gaps == [] and not any(f.recovered for f in manifest.files)
        assert await service.index.active(ROOM_ID) is None

        # A recording whose owner will not resume it: finalized at once.
        second = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
        await env.wait(lambda: env.recorder_frames("host", "video") >= 15, "recording")
        await env.service.suspend(ROOM_ID)
        answers[:] = [False]
        (finalized,) = await service.recover(scan_disk=False)
        assert finalized.id == second.id and finalized.state == "interrupted"
        assert asked[-1] == (ROOM_ID, second.id)
        with pytest.raises(RecordingConflict) as refused:
            await service.resume(second.id, other.harness.room, other.room, other.context())
        assert refused.value.code == "not_resumable"


@pytest.mark.parametrize(
    ("track_id", "part", "name"),
    [
        ("host-video-2", 1, "host-video-2.webm"),
        ("host-video-2", 2, "host-video-2.p2.webm"),
        ("m1-audio-13", 12, "m1-audio-13.p12.webm"),
    ],
)
def test_file_names_say_their_part(track_id: str, part: int, name: str) -> None:
    # Recovery reads the part from the name of a file the track log never heard of.
    assert file_name_for(track_id, "vp8" if "video" in track_id else "opus", part) == name
    assert parse_file_name(name) == (track_id, part)
