"""Two server processes on one Redis: events cross between them; a killed node's people vanish."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from server.state.embedded import embedded_redis_url
from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC
from tests.processes import ServerProcess, server_process


async def _token(server: ServerProcess, identity: str, role: str, venue: str) -> str:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"identity": identity, "name": identity, "role": role, "venue": venue}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{server.base_url}/api/rooms/two/tokens", json=body) as response,
    ):
        assert response.status == 201
        return str((await response.json())["token"])


async def test_events_cross_nodes_and_a_killed_nodes_participants_vanish(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fast = ("--heartbeat", "0.3", "--presence-ttl", "1.5")
    async with server_process(data, free_port(), *fast) as node_a:
        redis_url = embedded_redis_url(data)
        async with server_process(data, free_port(), "--redis-url", redis_url, *fast) as node_b:
            headers = {"Authorization": f"Bearer {node_a.api_key}"}
            async with (
                aiohttp.ClientSession(headers=headers) as http,
                http.post(
                    node_a.base_url + "/api/rooms", json={**ROOM_SPEC, "id": "two"}
                ) as response,
            ):
                assert response.status == 201
            host = RoomClient(node_a.base_url, await _token(node_a, "host", "host", "hunan"))
            await host.connect()
            member = RoomClient(node_b.base_url, await _token(node_b, "m1", "member", "shifeng"))
            await member.connect()
            await host.wait_for(lambda: "m1" in host.participants)
            assert host.participants["m1"].node != host.you.node, "the two are on different nodes"
            async with (
                aiohttp.ClientSession(headers=headers) as http,
                http.get(node_b.base_url + "/api/rooms/two") as response,
            ):
                detail = await response.json()
            assert detail["media_node"] == host.you.node, "the room is pinned to the first node"
            # From now on, join links lead to that node, whichever node issued them.
            async with (
                aiohttp.ClientSession(headers=headers) as http,
                http.post(
                    f"{node_b.base_url}/api/rooms/two/tokens",
                    json={"identity": "m9", "name": "m9", "role": "member", "venue": "hunan"},
                ) as response,
            ):
                link = (await response.json())["url"]
            assert link.startswith(node_a.base_url + "/join?token=")

            # B -> A: a raised hand and a chat message.
            await member.raise_hand()
            await host.wait_for(lambda: host.live.queue == ["m1"])
            entry = await member.chat("来自区县会场")
            await host.wait_for(lambda: any(e.id == entry.id for e in host.timeline))
            # A -> B: the host gives the floor.
            await host.grant_floor("m1")
            await member.wait_for(
                lambda: member.live.floor is not None and member.live.floor.identity == "m1"
            )

            # A host on A removes someone connected to B: the disconnect crosses nodes too.
            observer = RoomClient(
                node_b.base_url, await _token(node_b, "o1", "observer", "national")
            )
            await observer.connect()
            await host.remove("o1")
            await observer.wait_for(lambda: observer.disconnected.is_set())

            # Node B dies without a word; its participant disappears by presence expiry.
            await node_b.kill()
            await host.wait_for(lambda: "m1" not in host.participants, timeout=10)
            await host.wait_for(lambda: host.live.floor is None)
            await host.wait_for(
                lambda: any(e.type == "left" and e.data["identity"] == "m1" for e in host.timeline)
            )
            left = next(e for e in host.timeline if e.type == "left" and e.data["identity"] == "m1")
            assert left.data["reason"] == "connection_lost"
            await host.close()
