"""A process that records one publisher until it is killed (run by test_crash_recovery).

    python -m tests.recording.crash_recorder REDIS_URL RECORDINGS_DIR

It prints one JSON line when the recording has started, then the number of
video frames written after every writer pass, and records until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import redis.asyncio as aioredis

from tests.recording.recording_kit import ROOM_ID, recording_env


async def main(redis_url: str, root: Path) -> None:
    client = aioredis.Redis.from_url(redis_url)
    async with recording_env(
        client, root, lease_seconds=0.2, lease_ttl=1.0, auto_render=False
    ) as env:
        await env.join("host", amplitude=0.3)
        info = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
        print(json.dumps({"recording": info.id}), flush=True)
        recording = env.service.recording(ROOM_ID)
        assert recording is not None
        while True:
            async with recording.pass_done:
                await recording.pass_done.wait()
            print(env.recorder_frames("host", "video"), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
