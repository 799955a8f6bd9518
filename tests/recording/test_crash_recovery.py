"""kill -9 of a recording process, then recovery: playable files, a manifest marked incomplete."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import redis.asyncio as aioredis

from server.recording.config import RecordingConfig
from server.recording.manifest_files import read_manifest
from server.recording.service import RecordingService
from server.state import keys
from server.state.store import RedisStore
from tests.processes import REPO
from tests.recording.recording_kit import counter_jumps, decode_file, wait_for_lease_expiry


async def test_killed_recorder_leaves_playable_files_marked_incomplete(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
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
            started = json.loads(await child.stdout.readline())
            recording_id = started["recording"]
            while int(await child.stdout.readline()) < 100:  # ~3.3 s of video written
                pass
    finally:
        child.kill()  # SIGKILL: no cleanup of any kind
        await child.wait()
    folder = root / recording_id
    parts = sorted(p.name for p in folder.glob("*.part"))
    assert parts == ["host-audio-1.webm.part", "host-video-2.webm.part"]
    manifest = read_manifest(folder)
    assert manifest is not None and manifest.state == "recording"

    # The dead writer's lease runs out; then recovery takes the recording over.
    await wait_for_lease_expiry(redis_client, recording_id)
    changes = []
    service = RecordingService(
        RedisStore(redis_client),
        RecordingConfig(recordings_dir=root, auto_render=False),
        node_id="node-after-restart",
        on_change=changes.append,
    )
    try:
        # The periodic run: only what Redis lists as in progress, no disk scan.
        recovered = await service.recover(scan_disk=False)
    finally:
        await service.close()
    assert [r.id for r in recovered] == [recording_id] == [c.id for c in changes]
    assert recovered[0].state == "interrupted" and not recovered[0].complete
    manifest = read_manifest(folder)
    assert manifest is not None
    assert manifest.state == "interrupted" and not manifest.complete
    assert manifest.error is not None and "unexpectedly" in manifest.error
    assert not list(folder.glob("*.part"))
    assert {f.name for f in manifest.files} == {"host-audio-1.webm", "host-video-2.webm"}
    for entry in manifest.files:
        assert entry.recovered and entry.error is None and entry.sha256
        decoded = decode_file(folder / entry.name)
        # Clusters close every second: at most ~1 s of the 3.3 s written may be lost.
        assert 2.0 <= decoded.duration <= 3.8, (entry.name, decoded.duration)
        assert abs(entry.duration - decoded.duration) < 0.1
        if entry.kind == "video":
            assert counter_jumps(decoded.counters) == [] and decoded.frames >= 60
        else:
            assert decoded.peak > 0.05
    summary = await service.index.get(recording_id)
    assert summary is not None and summary.state == "interrupted" and not summary.complete
    assert await redis_client.hget(keys.ACTIVE_RECORDINGS, "room-1") is None

    # Recovery is idempotent: a second run, scanning the disk, finds nothing left to do.
    again = RecordingService(
        RedisStore(redis_client), RecordingConfig(recordings_dir=root), node_id="n3"
    )
    try:
        assert await again.recover() == []
    finally:
        await again.close()
