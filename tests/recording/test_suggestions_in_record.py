"""A recorded session's record (the archive page's data), minutes and export carry the members'
micro-suggestions under their agenda item with the status and reply set after the session,
including one submitted before the session; once the room is deleted, the recording keeps
those of its own timeline."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from signaling.client import RoomClient
from tests.helpers import ServerHandle
from tests.recording.recording_kit import recording_server

IDEA = {"category": "urban", "title": "老旧小区改造", "body": "建议优先改造霞湾片区老旧小区"}


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def _get(server: ServerHandle, path: str) -> bytes:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with server.http.get(server.base_url + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def test_the_record_minutes_and_export_show_suggestions_with_their_handling(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    token = await server.token(rid, "m1", "member", "zhuzhou", name="张委员")
    # Before the session, over REST with the member's own token.
    async with server.http.post(
        f"{server.base_url}/api/rooms/{rid}/suggestions",
        json={**IDEA, "agenda_index": 2, "department": "市住建局"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 201
        early = (await response.json())["suggestion"]["id"]
    host = await server.client(rid, "host", "host", "hunan")
    status, body = await server.request("POST", f"/api/rooms/{rid}/recording/start")
    assert status == 201, body
    recording_id = body["id"]
    member = RoomClient(server.base_url, token)
    await member.connect()
    await host.advance_agenda(1)
    during = (await member.call("suggestion_submit", {**IDEA, "title": "增设公交线路"}))[
        "suggestion"
    ]["id"]
    status, body = await server.request("POST", f"/api/rooms/{rid}/recording/stop")
    assert status == 200, body
    await host.end_session()
    await member.close()
    await host.close()
    for suggestion_id, update in (
        (early, {"status": "answered", "reply": "已纳入2027年改造计划"}),
        (during, {"status": "forwarded"}),
    ):
        status, body = await server.request(
            "PATCH", f"/api/rooms/{rid}/suggestions/{suggestion_id}", update
        )
        assert status == 200, body

    record = json.loads(await _get(server, f"/api/recordings/{recording_id}/record"))
    found = {s["id"]: s for s in record["suggestions"]}
    assert list(found) == [early, during]
    assert found[early]["before_session"] and found[early]["entry_id"] is None
    assert (found[early]["agenda_index"], found[early]["status"]) == (2, "answered")
    assert found[early]["reply"] == "已纳入2027年改造计划"
    assert found[early]["category_label"] == "城乡建设"
    assert found[during]["entry_id"] is not None and found[during]["agenda_index"] == 1
    assert found[during]["status"] == "forwarded" and found[during]["offset"] > 0
    markdown = (await _get(server, f"/api/recordings/{recording_id}/minutes?format=md")).decode()
    third = markdown.split("### 3. 协商发言", 1)[1].split("#### 公众提问", 1)[0]
    assert "老旧小区改造" in third and "会前提交" in third and "已纳入2027年改造计划" in third
    second = markdown.split("### 2. 情况通报", 1)[1].split("#### 公众提问", 1)[0]
    assert "增设公交线路" in second and "已转交" in second
    exported = zipfile.ZipFile(
        io.BytesIO(await _get(server, f"/api/recordings/{recording_id}/export"))
    )
    (record_name,) = [n for n in exported.namelist() if n.endswith("record.json")]
    assert [s["status"] for s in json.loads(exported.read(record_name))["suggestions"]] == [
        "answered",
        "forwarded",
    ]

    # The room deleted (its suggestions and their handling with it): the recording still
    # has the suggestion its timeline carries, as received.
    status, _ = await server.request("DELETE", f"/api/rooms/{rid}")
    assert status == 204
    record = json.loads(await _get(server, f"/api/recordings/{recording_id}/record"))
    assert [(s["id"], s["status"]) for s in record["suggestions"]] == [(during, "received")]
