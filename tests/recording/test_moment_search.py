"""Search inside sessions: Chinese words inside chat sentences, speakers' names, agenda titles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.state import keys
from tests.helpers import ServerHandle
from tests.recording.recording_kit import recording_server
from tests.recording.session_scenario import CHAT_M1, CHAT_M2, run_recorded_session


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def search(server: ServerHandle, **params: str) -> list[dict[str, Any]]:
    status, body = await server.request("GET", "/api/moments", params=params)
    assert status == 200, body
    return list(body["moments"])


async def test_moments_are_found_in_chinese_and_point_at_the_recording(
    server: ServerHandle, redis_client: aioredis.Redis
) -> None:
    run = await run_recorded_session(server)
    at, rid = run.at, run.recording_id
    start = at["recording_start"]

    # A two-character word inside a chat sentence (no spaces in Chinese).
    hits = await search(server, q="搬迁")
    assert [(h["kind"], h["recording_id"], h["text"]) for h in hits] == [("chat", rid, CHAT_M1)]
    assert abs(hits[0]["offset"] - (at["m1_chat"] - start)) <= 1.0
    assert hits[0]["name"] == "陈静怡" and hits[0]["agenda_title"] == "情况通报"
    # Substrings match; characters that are merely both present do not.
    assert len(await search(server, q="迁改")) == 1
    assert await search(server, q="搬改") == []
    assert await search(server, q="清水塘搬迁") == []

    # A speaker's name finds the moment of their speech.
    hits = await search(server, q="李明")
    speeches = [h for h in hits if h["kind"] == "speech"]
    assert len(speeches) == 1 and speeches[0]["identity"] == "m2"
    assert abs(speeches[0]["offset"] - (at["m2_grant"] - start)) <= 1.0
    assert speeches[0]["agenda_title"] == "协商发言"
    hits = await search(server, q="陈静怡")
    offsets = [h["offset"] for h in hits if h["kind"] == "speech"]
    assert len(offsets) == 2
    assert abs(offsets[0] - (at["m1_grant"] - start)) <= 1.0
    assert abs(offsets[1] - (at["m1_grant2"] - start)) <= 1.0

    # Agenda titles, Latin text case-insensitively, and a venue finds its speakers.
    # (the agenda item, then the speech given on it)
    hits = await search(server, q="情况通报")
    assert [(h["kind"], h["identity"]) for h in hits] == [("agenda", None), ("speech", "m1")]
    assert abs(hits[0]["offset"] - (at["item1"] - start)) <= 1.0
    assert [h["text"] for h in await search(server, q="FUNDING")] == [CHAT_M2]
    assert {h["identity"] for h in await search(server, q="石峰区")} == {"m1"}

    # Scoped to one recording; bad input is refused.
    assert len(await search(server, q="搬迁", recording=rid)) == 1
    assert await search(server, q="搬迁", recording="other-recording") == []
    for params, message in (
        ({}, "q:"),
        ({"q": " "}, "q:"),
        ({"q": "x" * 101}, "q:"),
        ({"q": "搬迁", "recording": "Bad/Id"}, "recording:"),
        ({"q": "搬迁", "limit": "0"}, "limit:"),
        ({"q": "搬迁", "limit": "ten"}, "limit:"),
        ({"q": "搬迁", "page": "2"}, "page:"),
    ):
        status, body = await server.request("GET", "/api/moments", params=params)
        assert status == 422 and body["error"]["message"].startswith(message), params
    async with server.http.get(f"{server.base_url}/api/moments?q=x") as response:
        assert response.status == 401

    # Deleting the recording removes its moments.
    status, _ = await server.request("DELETE", f"/api/recordings/{rid}")
    assert status == 204
    assert await search(server, q="搬迁") == []
    assert not await redis_client.exists(
        keys.recording_moments(rid), keys.recording_moment_terms(rid)
    )
    assert await redis_client.zscore(keys.moments_by_term("搬迁"), f"{rid}/0") is None
