"""A participant the host renamed during a recorded session carries the new name in the archive:
the recording's participant list, its attendance and its speaking record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from signaling.client import RoomClient
from tests.helpers import ServerHandle, eventually
from tests.recording.recording_kit import recording_server

NEW_NAME = "株洲市 陈委员"


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def test_a_rename_reaches_the_archive(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = RoomClient(server.base_url, await server.token(rid, "host", "host", "hunan"))
    m1 = RoomClient(server.base_url, await server.token(rid, "m1", "member", "shifeng", "陈静怡"))
    try:
        await host.connect()
        status, body = await server.request("POST", f"/api/rooms/{rid}/recording/start")
        assert status == 201, body
        recording = body["id"]
        await m1.connect()
        await host.grant_floor("m1")
        renamed = await host.rename("m1", NEW_NAME)
        assert renamed.name == NEW_NAME
        await host.revoke_floor()
        status, body = await server.request("POST", f"/api/rooms/{rid}/recording/stop")
        assert status == 200, body
    finally:
        await m1.close()
        await host.close()

    async def manifest_written() -> bool:
        status, detail = await server.request("GET", f"/api/recordings/{recording}")
        return status == 200 and detail["manifest"] is not None

    await eventually(manifest_written, "the recording's manifest is written")
    _, detail = await server.request("GET", f"/api/recordings/{recording}")
    names = {p["identity"]: p["name"] for p in detail["manifest"]["participants"]}
    assert names["m1"] == NEW_NAME

    status, attendance = await server.request("GET", f"/api/recordings/{recording}/attendance")
    assert status == 200, attendance
    listed = {
        p["identity"]: p["name"]
        for level in attendance["levels"]
        for venue in level["venues"]
        for p in venue["participants"]
    }
    assert listed["m1"] == NEW_NAME

    status, speaking = await server.request("GET", f"/api/recordings/{recording}/speaking")
    assert status == 200, speaking
    assert NEW_NAME in str(speaking) and "陈静怡" not in str(speaking)
