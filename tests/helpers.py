"""Test helpers: running servers in-process, REST calls, a standard multi-level room."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server import appkeys
from server.app import create_app
from server.http.access_log import RedactingAccessLogger
from server.media import IceAddress, MediaRoom
from server.recording import RecordingConfig
from server.rooms.owned_room import OwnedRoom
from server.settings import Settings
from signaling.client import RoomClient
from tests.log_secrets import GUARD

#: A four-level room like the Zhuzhou session, small enough for every test.
ROOM_SPEC: dict[str, Any] = {
    "title": "清水塘新城建设专题协商会",
    "topic": "四级联动远程协商",
    "scheduled_start": "2026-12-01T09:00:00+08:00",
    "venues": [
        {"id": "national", "name": "全国政协会场", "level": "national"},
        {"id": "hunan", "name": "湖南省政协主会场", "level": "provincial", "main": True},
        {"id": "zhuzhou", "name": "株洲市政协会场", "level": "city"},
        {"id": "shifeng", "name": "石峰区政协会场", "level": "county"},
    ],
    "agenda": [
        {"title": "开场", "planned_speakers": ["host"]},
        {"title": "情况通报", "planned_speakers": ["m1"]},
        {"title": "协商发言", "planned_speakers": ["m2", "m3"]},
    ],
}


def require_tool(command: str, provisioned_by: str) -> str:
    """The path of an external program a test needs (ffmpeg, soffice…).

    `scripts/test` provisions every such program, so under CI a missing one fails the
    test; elsewhere (a developer running one module) it skips, naming the script."""
    path = shutil.which(command)
    if path is not None:
        return path
    message = f"{command} is not installed: {provisioned_by} installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class ApiHandle:
    """A running server (in this process or not) and an authenticated REST session to it."""

    base_url: str
    api_key: str
    http: aiohttp.ClientSession

    async def request(
        self, method: str, path: str, json: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the REST API as the organizer; returns (status, parsed JSON or None)."""
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        async with self.http.request(
            method, self.base_url + path, json=json, headers=headers, **kwargs
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def create_room(self, **overrides: Any) -> dict[str, Any]:
        """Create a room from ROOM_SPEC (with overrides) and return it."""
        status, body = await self.request("POST", "/api/rooms", {**ROOM_SPEC, **overrides})
        assert status == 201, body
        return dict(body)

    async def token(
        self, room_id: str, identity: str, role: str, venue: str, name: str | None = None
    ) -> str:
        """Issue a join token."""
        status, body = await self.request(
            "POST",
            f"/api/rooms/{room_id}/tokens",
            {"identity": identity, "name": name or identity, "role": role, "venue": venue},
        )
        assert status == 201, body
        return str(body["token"])

    async def client(self, room_id: str, identity: str, role: str, venue: str) -> RoomClient:
        """A joined signaling client for a new participant."""
        client = RoomClient(self.base_url, await self.token(room_id, identity, role, venue))
        await client.connect()
        return client


@dataclass
class ServerHandle(ApiHandle):
    """A server running in this process (its application at hand) and a REST session."""

    app: web.Application = field(kw_only=True)

    def owned_room(self, room_id: str) -> OwnedRoom | None:
        """The room as this node owns it (None if it does not own it)."""
        actor = self.app[appkeys.CLUSTER].directory.actor(room_id)
        return None if actor is None else actor.room

    def media_room(self, room_id: str) -> MediaRoom | None:
        """The room's media on this node, if this node owns it and media is open."""
        room = self.owned_room(room_id)
        return None if room is None else room.media.media_room


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 10.0
) -> None:
    """Wait until `condition()` holds, checking every 20 ms; fail with `what` after `within` s.

    For conditions on the server's side, which sends no event a test could wait on.
    """
    try:
        async with asyncio.timeout(within):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


@contextlib.asynccontextmanager
async def run_server(
    data_dir: Path,
    port: int,
    redis_url: str | None = None,
    recording_config: RecordingConfig | None = None,
    **settings: Any,
) -> AsyncIterator[ServerHandle]:
    """Run create_app(settings) on 127.0.0.1:port until the context exits."""
    config = Settings(
        port=port,
        data_dir=data_dir,
        redis_url=redis_url,
        heartbeat_seconds=settings.pop("heartbeat_seconds", 0.5),
        lease_ttl_seconds=settings.pop("lease_ttl_seconds", 3.0),
        # Media stays on loopback: candidates only on 127.0.0.1, remotes only from 127/8.
        ice_addresses=settings.pop("ice_addresses", (IceAddress("127.0.0.1"),)),
        ice_remote_allow=settings.pop("ice_remote_allow", (ipaddress.ip_network("127.0.0.0/8"),)),
        # Tests that render start their own worker.
        render_workers=settings.pop("render_workers", 0),
        **settings,
    )
    app = create_app(config)
    if recording_config is not None:
        app[appkeys.RECORDING_CONFIG] = recording_config
    # As `yitang serve` runs it: aiohttp's own access log would show join tokens.
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
    await runner.setup()
    GUARD.add_secrets(app[appkeys.API_KEY], config.metrics_token, config.turn.secret)
    GUARD.add_secret_files(data_dir)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield ServerHandle(config.base_url, app[appkeys.API_KEY], http, app=app)
    finally:
        await runner.cleanup()
