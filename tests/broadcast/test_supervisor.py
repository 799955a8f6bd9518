"""The broadcast worker's supervisor: a stop that comes while the worker process is
still being created (a node shutting down as a session goes live) leaves no worker."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from server.broadcast.supervisor import WorkerSupervisor


async def test_a_worker_being_created_when_stop_comes_does_not_outlive_it(
    tmp_path: Path,
) -> None:
    supervisor = WorkerSupervisor(
        "room-test", tmp_path / "live", on_keyframe=lambda _: None, on_failed=lambda _: None
    )
    starting = asyncio.create_task(supervisor.start())
    await asyncio.sleep(0)  # one turn: start() is now inside the process creation
    assert supervisor.process is None
    await supervisor.stop()
    await starting
    try:
        assert supervisor.process is not None
        assert supervisor.process.returncode is not None, "the worker outlived stop()"
    finally:
        if supervisor.process is not None and supervisor.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                supervisor.process.kill()
            await supervisor.process.wait()
