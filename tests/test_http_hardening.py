"""The HTTP edge against browsers and guessers: Socket.IO origins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from server import appkeys
from server.settings import Settings
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server

# --- Socket.IO origins -----------------------------------------------------------------------

EVIL = "http://evil.example"


async def _polling_handshake(server: ServerHandle, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    url = server.base_url + "/socket.io/?EIO=4&transport=polling"
    async with server.http.get(url, headers=headers) as response:
        return response.status


async def _websocket_handshake(server: ServerHandle, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    url = server.base_url + "/socket.io/?EIO=4&transport=websocket"
    try:
        async with server.http.ws_connect(url, headers=headers) as ws:
            opening = await ws.receive_str(timeout=10)
            assert opening.startswith("0{"), opening  # engine.io "open" with the session id
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def _wait_for_fanout(server: ServerHandle, redis_client: aioredis.Redis) -> None:
    """Wait until the server's Socket.IO fan-out listens on Redis, if it has one (bounded).

    The first accepted handshake starts python-socketio's Redis listener; cancelled
    before its SUBSCRIBE is done, that listener can swallow the cancellation, and the
    server's shutdown then waits for it forever (signaling/fanout.py).
    """
    channel = getattr(server.app[appkeys.SOCKETIO].manager, "channel", None)
    if channel is None:  # a manager without a Redis listener
        return
    async with asyncio.timeout(15):
        while (await redis_client.pubsub_numsub(channel))[0][1] < 1:
            await asyncio.sleep(0.02)


async def test_socketio_refuses_other_sites_and_accepts_configured_origins(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    own = f"http://127.0.0.1:{port}"
    other_node = "https://node2.example"
    async with run_server(
        tmp_path / "data", port, redis_url=redis_url, allowed_origins=(own, other_node)
    ) as server:
        for handshake in (_polling_handshake, _websocket_handshake):
            ok = 200 if handshake is _polling_handshake else 101
            assert await handshake(server, EVIL) == 400, handshake.__name__
            assert await handshake(server, "http://127.0.0.1:1") == 400, "another port"
            assert await handshake(server, own) == ok
            assert await handshake(server, other_node) == ok
            assert await handshake(server, None) == ok, "clients without Origin are not browsers"
        await _wait_for_fanout(server, redis_client)


async def test_socketio_origin_defaults_to_the_public_url(
    server: ServerHandle, redis_client: aioredis.Redis
) -> None:
    assert await _websocket_handshake(server, EVIL) == 400
    assert await _websocket_handshake(server, server.base_url) == 101
    await _wait_for_fanout(server, redis_client)


def test_allowed_origins_are_kept_as_browsers_send_them() -> None:
    settings = Settings(allowed_origins=("HTTPS://Yitang.Example:443/", "http://[::1]:8080"))
    assert settings.public_origins == ("https://yitang.example", "http://[::1]:8080")
    assert Settings(port=9000).public_origins == ("http://127.0.0.1:9000",)
    assert Settings(public_url="https://a.example/yitang/").public_origins == ("https://a.example",)
    for wrong in ("yitang.example", "ftp://a.example", "https://a.example/path", "https://a:x"):
        with pytest.raises(ValueError, match="origin"):
            Settings(allowed_origins=(wrong,))
