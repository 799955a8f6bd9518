"""`yitang serve` runs render workers beside itself — separate processes that die with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import redis
from rq import Worker

from server.state.embedded import embedded_redis_url
from tests.conftest import free_port
from tests.processes import server_process


def _worker_pids(url: str) -> list[int]:
    with redis.Redis.from_url(url) as connection:
        return [w.pid for w in Worker.all(connection=connection) if w.pid]


async def test_serve_starts_render_workers_that_die_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with server_process(data, free_port(), "--render-workers", "1") as server:
        url = embedded_redis_url(data)
        async with asyncio.timeout(30):
            while not (pids := await asyncio.to_thread(_worker_pids, url)):
                await asyncio.sleep(0.2)  # the worker registers itself in Redis when ready
        (pid,) = pids
        assert pid != server.process.pid, "renders never run in the process that forwards media"
        assert psutil.Process(pid).ppid() == server.process.pid
        await server.kill()
    async with asyncio.timeout(15):
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            await asyncio.sleep(0.1)
