"""Several Yitang nodes as processes on one Valkey, for the multi-node and fault tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC
from tests.processes import ServerProcess, ValkeyServer, server_process, valkey_server
from tests.session_peer import SessionPeer


@dataclass
class Cluster:
    """Running nodes sharing one Valkey, the API key and the token secret."""

    valkey: ValkeyServer
    nodes: list[ServerProcess]

    @property
    def api_key(self) -> str:
        """The deployment's admin key (every node reads the same data directory)."""
        return self.nodes[0].api_key

    async def request(
        self, node: ServerProcess, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        """Call a node's REST API as the organizer."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.request(method, node.base_url + path, json=body) as response,
        ):
            payload = await response.json() if response.content_type == "application/json" else None
            return response.status, payload

    async def create_room(self, **overrides: Any) -> str:
        """A four-level room (through the first node); returns its id."""
        status, room = await self.request(
            self.nodes[0], "POST", "/api/rooms", {**ROOM_SPEC, **overrides}
        )
        assert status == 201, room
        return str(room["id"])

    async def token(
        self, room_id: str, identity: str, role: str, venue: str, node: ServerProcess | None = None
    ) -> str:
        """A join token, issued by `node` (any node may issue one)."""
        body = {"identity": identity, "name": identity, "role": role, "venue": venue}
        status, issued = await self.request(
            node or self.nodes[0], "POST", f"/api/rooms/{room_id}/tokens", body
        )
        assert status == 201, issued
        return str(issued["token"])

    async def client(
        self, node: ServerProcess, room_id: str, identity: str, role: str, venue: str
    ) -> RoomClient:
        """A joined signaling client on `node`."""
        client = RoomClient(node.base_url, await self.token(room_id, identity, role, venue))
        await client.connect()
        return client

    async def peer(
        self, node: ServerProcess, room_id: str, identity: str, role: str, venue: str, index: int
    ) -> SessionPeer:
        """A joined, publishing aiortc participant on `node` that reconnects by itself."""
        token = await self.token(room_id, identity, role, venue)
        peer = SessionPeer(node.base_url, token, index, amplitude=0.3, reconnect=True)
        await peer.join()
        if role != "observer":
            await peer.publish()
        return peer

    async def wait_until_acquainted(self, within: float = 20.0) -> None:
        """Wait until each node lists every node (a snapshot's `nodes` tells clients where
        to go if theirs dies: they must be complete before a node is killed)."""
        expected = len(self.nodes)
        async with asyncio.timeout(within):
            for node in self.nodes:
                while True:
                    _, listing = await self.request(node, "GET", "/api/nodes")
                    if len(listing["nodes"]) >= expected:
                        break
                    await asyncio.sleep(0.2)  # nodes learn of each other at their heartbeat

    async def detail(self, room_id: str, node: ServerProcess | None = None) -> dict[str, Any]:
        """`GET /api/rooms/{id}` on a live node."""
        status, detail = await self.request(node or self.nodes[-1], "GET", f"/api/rooms/{room_id}")
        assert status == 200, detail
        return dict(detail)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, count: int = 2, *args: str, allow_each_other: bool = False
) -> AsyncIterator[Cluster]:
    """`count` nodes (started one after the other) on a Valkey of the test's own.

    `allow_each_other`: each node accepts pages served by the others (a browser that
    loaded its page from one node reconnects to another after a failure).
    """
    ports = [free_port() for _ in range(count)]
    origins: list[str] = []
    if allow_each_other:
        for port in ports:
            origins += ["--allowed-origin", f"http://127.0.0.1:{port}"]
    async with valkey_server() as valkey, contextlib.AsyncExitStack() as stack:
        data = tmp_path / "data"
        nodes = []
        for port in ports:
            node = server_process(data, port, "--redis-url", valkey.url, *origins, *args)
            nodes.append(await stack.enter_async_context(node))
        deployment = Cluster(valkey, nodes)
        await deployment.wait_until_acquainted()
        yield deployment
