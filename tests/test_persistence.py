"""The embedded Redis keeps rooms across restarts, even when the server is killed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from server.state.embedded import embedded_redis_url, ping
from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC
from tests.processes import ServerProcess, server_process


async def _create_room_and_chat(server: ServerProcess) -> str:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(
            server.base_url + "/api/rooms", json={**ROOM_SPEC, "id": "kept"}
        ) as response:
            assert response.status == 201
        token_request = {"identity": "m1", "name": "委员", "role": "member", "venue": "zhuzhou"}
        async with http.post(
            server.base_url + "/api/rooms/kept/tokens", json=token_request
        ) as response:
            token = (await response.json())["token"]
    client = RoomClient(server.base_url, token)
    await client.connect()
    await client.chat("会前留言")
    await client.close()
    return str(token)


async def _chat_texts(server: ServerProcess, token: str) -> list[object]:
    client = RoomClient(server.base_url, token)
    await client.connect()
    texts = [e.data["text"] for e in client.timeline if e.type == "chat"]
    await client.close()
    return texts


async def _redis_answers(data_dir: Path) -> bool:
    return await ping(embedded_redis_url(data_dir))


async def test_rooms_survive_a_clean_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    async with server_process(data, port) as first:
        key = first.api_key
        token = await _create_room_and_chat(first)
        assert await first.stop() == 0
    assert not await _redis_answers(data), "the embedded Redis stops with the server"
    async with server_process(data, port) as second:
        assert second.api_key == key, "the API key is kept in the data directory"
        assert await _chat_texts(second, token) == ["会前留言"], "join links stay valid"


async def test_rooms_survive_kill_9_and_the_embedded_redis_does_not_linger(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    async with server_process(data, port) as first:
        token = await _create_room_and_chat(first)
        await first.kill()
    # PR_SET_PDEATHSIG makes the embedded Valkey exit (flushing its AOF) with its parent.
    async with asyncio.timeout(10):
        while await _redis_answers(data):
            await asyncio.sleep(0.1)
    async with server_process(data, port) as second:
        assert await _chat_texts(second, token) == ["会前留言"]
