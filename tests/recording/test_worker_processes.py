"""``worker_processes``: the render workers started beside a server are always stopped."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import pytest

from server.recording.worker import worker_processes


async def test_workers_already_started_are_stopped_when_a_later_one_fails_to_spawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_spawn = asyncio.create_subprocess_exec
    started: list[asyncio.subprocess.Process] = []

    async def spawn(*command: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if started:
            raise OSError("fork failed: out of memory")
        # A stand-in worker that runs until it is signalled.
        process = await real_spawn(sys.executable, "-c", "import signal; signal.pause()", **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn)  # as worker.py calls it
    try:
        with pytest.raises(OSError, match="fork failed"):
            async with worker_processes(2, "redis://127.0.0.1:1"):
                pytest.fail("the context must not be entered")
        assert len(started) == 1
        assert started[0].returncode == -signal.SIGTERM
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()
