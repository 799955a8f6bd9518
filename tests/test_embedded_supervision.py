"""The embedded Valkey is supervised: killed, it comes back with its data while the node
stays live; when it cannot come back, the node exits with a failure status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from server.state import embedded
from server.state.connection import redis_client
from server.state.embedded import PID_FILE, EmbeddedValkey, embedded_redis_url
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC
from tests.processes import ServerProcess, server_process


def _valkey_pid(data_dir: Path) -> int:
    return int((data_dir / "redis" / PID_FILE).read_text())


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody has reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, dict(await response.json())


async def _wait_for_ready(http: aiohttp.ClientSession, server: ServerProcess, ready: bool) -> None:
    async with asyncio.timeout(30):
        while (await _get(http, server.base_url + "/readyz"))[0] != (200 if ready else 503):
            await asyncio.sleep(0.05)


async def _make_durable(data_dir: Path) -> None:
    """Wait until everything written so far is fsynced to the append-only file.

    With `appendfsync everysec`, the last second of writes dies with a killed
    Valkey; this test is about supervision, not that second. The append-only
    file is written in order, so once a later write of ours is on disk, so is
    all that the server wrote before it.
    """
    client = redis_client(embedded_redis_url(data_dir))
    try:
        await client.set("test:durable", "1")
        local, _ = await client.execute_command("WAITAOF", 1, 0, 10_000)
        assert local == 1
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _watch_liveness(
    http: aiohttp.ClientSession, server: ServerProcess
) -> AsyncIterator[list[int]]:
    """Poll /healthz all along; yields the statuses seen."""
    statuses: list[int] = []

    async def poll() -> None:
        while True:
            statuses.append((await _get(http, server.base_url + "/healthz"))[0])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(poll())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_killed_valkey_comes_back_with_its_rooms(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with (
        server_process(data, free_port()) as server,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.api_key}"}) as http,
    ):
        rooms = server.base_url + "/api/rooms"
        async with http.post(rooms, json={**ROOM_SPEC, "id": "kept"}) as response:
            assert response.status == 201
        await _make_durable(data)
        first = _valkey_pid(data)
        async with _watch_liveness(http, server) as liveness:
            # Frozen first: a Redis that hangs makes the node unready but keeps it live.
            os.kill(first, signal.SIGSTOP)
            await _wait_for_ready(http, server, False)
            status, body = await _get(http, server.base_url + "/healthz")
            assert (status, body["status"], body["redis"]) == (200, "degraded", "unreachable")
            status, body = await _get(http, server.base_url + "/readyz")
            assert (status, body["reasons"]) == (503, ["redis_unreachable"])

            os.kill(first, signal.SIGKILL)
            await _wait_for_ready(http, server, True)
        assert liveness and set(liveness) == {200}, liveness
        second = _valkey_pid(data)
        assert second != first and _alive(second) and not _alive(first)

        async with http.get(rooms + "/kept") as response:
            assert response.status == 200, "the append-only file brought the room back"
        async with http.post(rooms, json={**ROOM_SPEC, "id": "after"}) as response:
            assert response.status == 201

        # The restarted Valkey is tied to the server like the first one.
        await server.kill()
        async with asyncio.timeout(15):
            while _alive(second):
                await asyncio.sleep(0.05)


async def test_a_valkey_that_cannot_come_back_fails_the_node(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with server_process(data, free_port()) as server:
        pid = _valkey_pid(data)
        # The data directory becomes unusable: no restart can succeed.
        (data / "redis").rename(data / "redis-gone")
        (data / "redis").write_text("not a directory")
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(60):  # five restart attempts with backoff take about 3 s
            status = await server.process.wait()
        log = server.log.read_text()
    assert status == 1, log
    assert "embedded Valkey could not be kept running: 5 restart attempts" in log
    assert "yitang: the node failed" in log


async def test_a_stale_socket_removed_meanwhile_does_not_stop_the_start(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A node started again at once in the same data directory finds the old Valkey's
    socket, which that Valkey removes as it exits, between the check and the cleanup:
    the new one starts all the same (it used to fail with FileNotFoundError)."""
    valkey = EmbeddedValkey(tmp_path)
    valkey.socket_path.parent.mkdir(parents=True)
    valkey.socket_path.touch()  # the old server's socket, still there
    real_ping = embedded.ping
    checks: list[str] = []

    async def ping_as_the_old_one_exits(url: str) -> bool:
        if not checks:
            valkey.socket_path.unlink()  # the old Valkey, exiting, removes its socket now
        checks.append(url)
        return await real_ping(url)

    monkeypatch.setattr(embedded, "ping", ping_as_the_old_one_exits)
    await valkey.start()
    try:
        client = redis_client(valkey.url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    finally:
        await valkey.close()
