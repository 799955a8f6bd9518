"""`yitang serve --workers 2`: two node processes behind one port, as one server.

Run as a user would: one command, one port, the embedded Valkey. Rooms go to
both processes (a box with two rooms uses two cores); a node process that
dies is started again and its room's participants are back without a user
action; SIGTERM stops the whole box cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, eventually
from tests.processes import REPO, wait_healthy


class Box:
    """A running `yitang serve --workers 2` and its admin API."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str, data: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.api_key = (data / "api-key").read_text().strip()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.request(method, self.base_url + path, json=body) as response,
        ):
            return response.status, await response.json()

    async def nodes(self) -> list[dict[str, Any]]:
        status, listing = await self.request("GET", "/api/nodes")
        assert status == 200, listing
        return list(listing["nodes"])

    async def client(self, room_id: str, identity: str, role: str, venue: str) -> RoomClient:
        body = {"identity": identity, "name": identity, "role": role, "venue": venue}
        status, issued = await self.request("POST", f"/api/rooms/{room_id}/tokens", body)
        assert status == 201, issued
        client = RoomClient(self.base_url, issued["token"], reconnect=True)
        await client.connect()
        return client


@contextlib.asynccontextmanager
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "box.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve", "--workers", "2",
            "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
            "--ice-address", "127.0.0.1", "--ice-remote-allow", "127.0.0.0/8",
            "--render-workers", "0", "--heartbeat", "0.5", "--lease-ttl", "3",
            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=output, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", process, log)
        running = Box(process, f"http://127.0.0.1:{port}", data)
        nodes: list[dict[str, Any]] = []

        async def both_nodes_up() -> bool:
            nodes[:] = await running.nodes()
            return len(nodes) == 2

        await eventually(both_nodes_up, "both node processes are up", within=60)
        yield running
    finally:
        if process.returncode is None:
            process.kill()  # the node processes get SIGTERM when it dies (PR_SET_PDEATHSIG)
            await process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(240)
async def test_two_node_processes_share_the_rooms_and_replace_one_that_dies(
    tmp_path: Path,
) -> None:
    async with box(tmp_path) as server:
        rooms = []
        for name in ("city", "county"):
            status, room = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "id": name})
            assert status == 201, room
            rooms.append(room["id"])
        hosts = [await server.client(room_id, "host", "host", "hunan") for room_id in rooms]
        members = [await server.client(room_id, "m1", "member", "shifeng") for room_id in rooms]
        owners = [host.owner.id for host in hosts if host.owner is not None]
        assert len(set(owners)) == 2, "each room is owned by its own node process"
        nodes: dict[str, dict[str, Any]] = {}

        async def both_owners_listed() -> bool:
            # Each process answers from its own view, at most one heartbeat old.
            nodes.update({n["id"]: n for n in await server.nodes()})
            return set(owners) <= set(nodes)

        await eventually(both_owners_listed, "the registry lists both owners")
        pids = {nodes[owner]["pid"] for owner in owners}
        assert len(pids) == 2 and server.process.pid not in pids

        # The city room's node process dies: the box starts another, the room moves,
        # and its participants go on without doing anything.
        dead = owners[0]
        os.kill(nodes[dead]["pid"], signal.SIGKILL)

        async def replaced() -> bool:
            ids = {n["id"] for n in await server.nodes()}
            return len(ids) == 2 and dead not in ids

        await eventually(replaced, "a new node process took the dead one's place", within=60)
        await hosts[0].wait_for(
            lambda: hosts[0].owner is not None and hosts[0].owner.id != dead, timeout=30
        )
        await hosts[0].grant_floor("m1")
        await members[0].wait_for(lambda: members[0].live.floor is not None, timeout=15)
        entry = await members[1].chat("区县会场不受影响")
        await hosts[1].wait_for(lambda: any(e.id == entry.id for e in hosts[1].timeline))
        for client in (*hosts, *members):
            await client.close()

        # SIGTERM: every node process drains and exits, then the box does, cleanly.
        pids = [n["pid"] for n in await server.nodes()]
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), timeout=60) == 0
        assert not [pid for pid in pids if _alive(pid)], "no node process outlives the box"
