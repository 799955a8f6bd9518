"""The combined video through the real job queue and a real worker process.

Four venues publish; the floor moves from the host to a county member and
back while the agenda advances. Stopping the recording queues the render on
RQ; a worker process (``python -m server.recording.worker``) picks it up. The
first worker is killed with its work-horse mid-render; a second worker's
startup sweep hands the abandoned job back to RQ, which runs it again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import redis
import redis.asyncio as aioredis
from rq import Queue

from server.recording.chapters import flat_chapters
from server.recording.config import RecordingConfig
from server.recording.jobs import RenderQueue, RenderWorker
from server.recording.manifest_files import read_manifest
from server.recording.models import COMBINED_NAME
from server.recording.service import RecordingService
from server.state.store import RedisStore
from tests.media.media_testkit import RoomHarness
from tests.recording.recording_kit import (
    ROOM_ID,
    RecordingEnv,
    make_room,
    shown_sender,
    start_worker,
    wait_render,
)


async def test_combined_video_through_queue_and_worker_crash(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    queue_name = f"render-test-{os.getpid()}-{time.monotonic_ns()}"
    store = RedisStore(redis_client)
    room = make_room()
    await store.create_room(room)
    harness = RoomHarness(room_id=ROOM_ID)
    render_queue = RenderQueue(redis_url, queue_name=queue_name)
    service = RecordingService(
        store,
        RecordingConfig(recordings_dir=tmp_path / "recordings"),
        node_id="node-test",
        render_queue=render_queue,
    )
    env = RecordingEnv(harness, store, room, tmp_path / "recordings", service)
    workers: list[asyncio.subprocess.Process] = []
    try:
        clients = {}
        for identity in ("host", "m1", "m2", "m3"):
            clients[identity] = await env.join(identity, amplitude=0.2)
        await env.wait(
            lambda: all(c.video is not None and c.video.sent > 10 for c in clients.values()),
            "everyone publishing",
        )
        info = await service.start(ROOM_ID, harness.room, room, "api", env.context())
        await env.wait(lambda: env.recorder_frames("host", "video") >= 45, "1.5 s recorded")
        await env.append_timeline(
            "floor_granted",
            {"identity": "m1", "name": "陈静怡", "venue": "shifeng", "role": "member"},
        )
        # The speaker view is probed at times of the timeline (the wall clock): wait for the
        # media to be written that far, since it lags behind on a busy machine.
        granted = time.time() - info.started_at
        await env.wait(lambda: env.recorded_until("m1", "video") >= granted + 2.0, "m1 spoke 2 s")
        await env.append_timeline("agenda_advanced", {"index": 1, "title": "协商发言"})
        await env.append_timeline("floor_expired", {"identity": "m1"})
        expired = time.time() - info.started_at
        await env.wait(lambda: env.recorded_until("host", "video") >= expired + 1.5, "host again")
        info = await service.stop(ROOM_ID)
        assert info.render.state == "queued"

        # A worker starts rendering; it and its work-horse die mid-job.
        workers.append(await start_worker(redis_url, queue_name))
        running = await wait_render(redis_client, info.id, {"running"}, within=30)
        assert running["attempt"] == "1"
        workers[0].send_signal(signal.SIGKILL)
        await workers[0].wait()
        os.kill(int(running["pid"]), signal.SIGKILL)
        assert not (env.root / info.id / COMBINED_NAME).exists()

        # The next worker's startup sweep hands the job back to RQ: it runs again.
        workers.append(await start_worker(redis_url, queue_name))
        done = await wait_render(redis_client, info.id, {"done", "failed"}, within=60)
        assert done["state"] == "done", done
        assert done["attempt"] == "2" and float(done["progress"]) == 100.0
        assert await asyncio.wait_for(workers[1].wait(), 30) == 0

        manifest = read_manifest(env.root / info.id)
        assert manifest is not None and manifest.combined is not None
        combined = env.root / info.id / COMBINED_NAME
        assert manifest.combined.size == combined.stat().st_size
        assert (
            manifest.combined.font.startswith("NotoSansCJK") or "fallback" in manifest.combined.font
        )
        summary = await service.index.get(info.id)
        assert summary is not None and summary.has_combined
        check_combined(combined, manifest, {i: c.index for i, c in clients.items()})
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await service.close()
        render_queue.close()
        await harness.close()


def check_combined(path: Path, manifest: Any, senders: dict[str, int]) -> None:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (1280, 720)
        duration = float(container.duration or 0) / 1_000_000
        assert abs(duration - manifest.duration) <= 0.05 * manifest.duration, duration

        # Chapters: agenda item and who is on screen, exactly as the timeline says.
        names = {p.identity: p.name for p in manifest.participants}
        agenda = [c for c in manifest.chapters if c.kind == "agenda"]
        expected = flat_chapters(agenda, manifest.speakers, names, manifest.host)
        chapters = container.chapters()
        assert [c["metadata"]["title"] for c in chapters] == [t for _, _, t in expected]
        assert [c["metadata"]["title"] for c in chapters] == [
            "开场 · 主持人甲",
            "开场 · 陈静怡",
            "协商发言 · 主持人甲",
        ]
        granted = next(e for e in manifest.timeline if e.type == "floor_granted")
        advanced = next(e for e in manifest.timeline if e.type == "agenda_advanced")
        expired = next(e for e in manifest.timeline if e.type == "floor_expired")
        starts = [float(c["start"] * c["time_base"]) for c in chapters]
        assert abs(starts[1] - (granted.ts / 1000 - manifest.started_at)) < 0.01
        # The agenda moved on and the floor came back in one gesture: two timeline entries
        # written one after the other, a few ms apart when idle but tens of ms apart on a busy
        # machine. They make one chapter, which begins at the first of them (flat_chapters).
        first_change = min(advanced.ts, expired.ts)
        assert abs(starts[2] - (first_change / 1000 - manifest.started_at)) < 0.01

        # The speaker view follows the floor: the host, then m1, then the host again.
        speaker = next(s for s in manifest.speakers if s.identity == "m1")
        camera = next(f for f in manifest.files if f.participant == "host" and f.kind == "video")
        first = max(0.7, camera.start_offset + 0.3)  # once the host's camera is recorded
        probes = {first: "host", (speaker.start + speaker.end) / 2: "m1", speaker.end + 0.8: "host"}
        seen: dict[float, int] = {}
        for frame in container.decode(video=0):
            for moment in probes:
                if moment not in seen and float(frame.time) >= moment:
                    seen[moment] = shown_sender(frame)
        assert {m: seen[m] for m in probes} == {m: senders[who] for m, who in probes.items()}

    with av.open(str(path)) as container:
        peak = 0.0
        for frame in container.decode(audio=0):
            peak = max(peak, float(np.abs(frame.to_ndarray()).max()))
        assert peak > 0.1, "the venues' audio is mixed in"


def test_a_leaving_worker_stops_its_command_thread_within_seconds(redis_url: str) -> None:
    """A render worker leaving (``--burst`` done, or SIGTERM) stops rq's command thread.
    Caught in that thread's wait for a subscription, rq's own worker waited there 60 s
    (redis-py 8.2's stop waits for the thread): a burst worker outlived its job by a
    minute. The state is made here on purpose: unsubscribed, the thread waiting."""
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(f"render-leave-{os.getpid()}", connection=connection)
    worker = RenderWorker([queue], connection=connection)
    try:
        worker.subscribe()
        pubsub = worker.pubsub
        assert pubsub is not None and pubsub.subscribed
        pubsub.unsubscribe()
        deadline = time.monotonic() + 30
        while pubsub.subscribed:  # the thread reads the unsubscribe's reply
            assert time.monotonic() < deadline, "the command thread never read its reply"
            time.sleep(0.01)
        started = time.monotonic()
        worker.unsubscribe()  # what rq's teardown does
        assert worker.pubsub_thread is not None and not worker.pubsub_thread.is_alive()
        assert time.monotonic() - started < 20, "rq's own thread waits 60 s here"
    finally:
        connection.close()
