"""Micro-suggestions (微建议): members submit per agenda item (before the session over REST
with their join token, during it over the socket); the host sees them per item, a member
only their own; after the session their status and reply are set over REST, kept through
a node restart, and shown in the record and the minutes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server import appkeys
from server.recording.minutes import minutes_markdown
from server.recording.session_record import live_room_source, room_suggestions, session_record
from server.rooms import suggestions
from signaling.client import RoomClient, SignalingError
from tests.cluster_kit import cluster
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server

SECRET = "建议在清水塘老工业区设立生态修复专项资金"
IDEA = {
    "category": "environment",
    "department": "市生态环境局",
    "title": "生态修复",
    "body": SECRET,
}


def _seen(client: RoomClient, text: str) -> bool:
    """Whether any event this client received, or its snapshot, carries `text`."""
    dumped = json.dumps(client.received, ensure_ascii=False)
    snapshot = client.snapshot.model_dump_json() if client.snapshot else ""
    return text in dumped or text in snapshot


async def _submit_rest(
    server: ServerHandle, room_id: str, token: str | None, body: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with server.http.post(
        f"{server.base_url}/api/rooms/{room_id}/suggestions", json=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_members_submit_per_agenda_item_and_only_the_host_side_sees_them_all(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    m1 = await server.client(rid, "m1", "member", "zhuzhou")
    m2 = await server.client(rid, "m2", "member", "national")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    await host.advance_agenda(1)
    ack = await m1.call("suggestion_submit", IDEA)
    mine = ack["suggestion"]
    assert (mine["by"], mine["agenda_index"], mine["status"]) == ("m1", 1, "received")
    assert mine["category"] == "environment" and mine["department"] == "市生态环境局"
    # Explicitly on another item.
    other = await m1.call("suggestion_submit", {**IDEA, "agenda_index": 2, "title": "第二条"})
    # The host is told at once, with the item each belongs to.
    await host.wait_for(lambda: sum(1 for e, _ in host.received if e == "suggestion") == 2)
    told = [p["suggestion"] for e, p in host.received if e == "suggestion"]
    assert [(s["id"], s["agenda_index"]) for s in told] == [
        (mine["id"], 1),
        (other["suggestion"]["id"], 2),
    ]
    # Nobody else hears of its text: not another member, not an observer, not a newcomer.
    late = await server.client(rid, "m3", "member", "national")
    await m2.chat("a message after the suggestion")
    for client in (m2, observer, late):
        await client.wait_for(lambda c=client: any(e.type == "chat" for e in c.timeline))
        assert not _seen(client, SECRET)
        assert client.snapshot is not None and client.snapshot.suggestions == []
    # Its author sees their own (told, and in a new snapshot); a host joining late sees all.
    assert any(e == "suggestion" for e, _ in m1.received)
    again = await server.client(rid, "m1", "member", "zhuzhou")
    assert again.snapshot is not None
    assert [s.id for s in again.snapshot.suggestions] == [mine["id"], other["suggestion"]["id"]]
    cohost = await server.client(rid, "c1", "cohost", "zhuzhou")
    assert cohost.snapshot is not None and len(cohost.snapshot.suggestions) == 2
    assert any(e.type == "suggestion_submitted" for e in cohost.snapshot.timeline)
    # Observers (and guests, and moderators) do not submit: a clear refusal.
    with pytest.raises(SignalingError) as refused:
        await observer.call("suggestion_submit", IDEA)
    assert refused.value.code == "suggestion_not_allowed"
    for client in (host, m1, m2, observer, late, again, cohost):
        await client.close()


async def test_bad_suggestions_and_floods_are_refused_with_clear_codes(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    for payload in (
        {**IDEA, "title": "题" * 101},
        {**IDEA, "body": "   "},
        {**IDEA, "body": "长" * 1001},
        {**IDEA, "category": "sports"},
        {**IDEA, "department": "部" * 65},
        {**IDEA, "title": "\u202e标题"},
        {**IDEA, "agenda_index": "1"},
        {**IDEA, "extra": 1},
    ):
        with pytest.raises(SignalingError) as refused:
            await member.call("suggestion_submit", payload)
        assert refused.value.code == "invalid_payload", payload
    with pytest.raises(SignalingError) as refused:
        await member.call("suggestion_submit", {**IDEA, "agenda_index": 7})
    assert refused.value.code == "agenda_out_of_range"
    # A few in a row, then: try again in a minute (per identity, a reconnect keeps it).
    for n in range(5):
        await member.call("suggestion_submit", {**IDEA, "title": f"建议 {n}"})
    with pytest.raises(SignalingError) as refused:
        await member.call("suggestion_submit", IDEA)
    assert refused.value.code == "suggestion_rate_limited" and "minute" in refused.value.message
    await member.close()
    member = await server.client(rid, "m1", "member", "zhuzhou")
    with pytest.raises(SignalingError) as refused:
        await member.call("suggestion_submit", IDEA)
    assert refused.value.code == "suggestion_rate_limited"
    # Per participant and per room: bounded.
    monkeypatch.setattr(suggestions, "MAX_SUGGESTIONS_PER_PARTICIPANT", 1)
    m2 = await server.client(rid, "m2", "member", "national")
    await m2.call("suggestion_submit", IDEA)
    with pytest.raises(SignalingError) as refused:
        await m2.call("suggestion_submit", IDEA)
    assert refused.value.code == "suggestion_limit_reached"
    monkeypatch.setattr(suggestions, "MAX_SUGGESTIONS", 6)
    with pytest.raises(SignalingError) as refused:
        await host.call("suggestion_submit", IDEA)
    assert refused.value.code == "suggestions_full"
    owned = server.owned_room(rid)
    assert owned is not None and len(owned.state.suggestions) == 6
    for client in (host, member, m2):
        await client.close()


async def test_a_member_submits_before_the_session_with_the_join_token(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    token = await server.token(rid, "m1", "member", "zhuzhou", name="张委员")
    status, body = await _submit_rest(server, rid, token, {**IDEA, "agenda_index": 1})
    assert status == 201, body
    kept = body["suggestion"]
    assert (kept["by"], kept["name"], kept["venue"]) == ("m1", "张委员", "zhuzhou")
    assert kept["before_session"] is True and kept["agenda_index"] == 1
    # Submitting did not start the session.
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert detail["live"]["status"] == "scheduled"
    # Who submits comes from the token: not the API key, not another room's token, not an
    # observer's; nor without one.
    observer = await server.token(rid, "o1", "observer", "shifeng")
    assert (await _submit_rest(server, rid, observer, IDEA))[1]["error"]["code"] == (
        "suggestion_not_allowed"
    )
    assert (await _submit_rest(server, rid, None, IDEA))[0] == 401
    assert (await _submit_rest(server, rid, server.api_key, IDEA))[0] == 401
    elsewhere = await server.create_room()
    foreign = await server.token(elsewhere["id"], "m1", "member", "zhuzhou")
    assert (await _submit_rest(server, rid, foreign, IDEA))[0] == 404
    status, body = await _submit_rest(server, rid, token, {**IDEA, "category": "x"})
    assert (status, body["error"]["code"]) == (422, "invalid_request")
    # The host, joining, finds it under its item.
    host = await server.client(rid, "host", "host", "hunan")
    assert host.snapshot is not None
    assert [(s.id, s.agenda_index, s.body) for s in host.snapshot.suggestions] == [
        (kept["id"], 1, SECRET)
    ]
    await host.close()


async def test_after_the_session_status_and_reply_are_set_and_survive_a_restart(
    redis_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with run_server(data, free_port(), redis_url=redis_url) as server:
        room = await server.create_room()
        rid = room["id"]
        host = await server.client(rid, "host", "host", "hunan")
        member = await server.client(rid, "m1", "member", "zhuzhou")
        member_token = await server.token(rid, "m1", "member", "zhuzhou")
        first = (await member.call("suggestion_submit", IDEA))["suggestion"]["id"]
        second = (await member.call("suggestion_submit", {**IDEA, "title": "另一条"}))[
            "suggestion"
        ]["id"]
        await host.end_session()
        # Ended: no more submissions, over the socket or over REST.
        status, body = await _submit_rest(server, rid, member_token, IDEA)
        assert (status, body["error"]["code"]) == (409, "session_ended")
        # (Members were disconnected; the host stays on the ended session's page.)
        with pytest.raises(SignalingError) as refused:
            await host.call("suggestion_submit", IDEA)
        assert refused.value.code == "session_ended"
        path = f"/api/rooms/{rid}/suggestions/{first}"
        update = {"status": "answered", "reply": "已列入明年预算"}
        # Only with the API key: not without, not with the member's own token.
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.patch(server.base_url + path, json=update) as response:
                assert response.status == 401
            async with anonymous.patch(
                server.base_url + path,
                json=update,
                headers={"Authorization": f"Bearer {member_token}"},
            ) as response:
                assert response.status == 401
            async with anonymous.get(server.base_url + f"/api/rooms/{rid}/suggestions") as r:
                assert r.status == 401
        status, body = await server.request("PATCH", path, {"status": "answered"})
        assert (status, body["error"]["code"]) == (422, "invalid_request")
        status, body = await server.request("PATCH", path, {"status": "closed"})
        assert status == 422
        status, body = await server.request("PATCH", f"/api/rooms/{rid}/suggestions/s99", update)
        assert (status, body["error"]["code"]) == (404, "suggestion_not_found")
        status, body = await server.request("PATCH", f"/api/rooms/{rid}/suggestions/x", update)
        assert status == 404
        status, body = await server.request("PATCH", path, update)
        assert status == 200, body
        assert (body["status"], body["reply"]) == ("answered", "已列入明年预算")
        status, body = await server.request(
            "PATCH", f"/api/rooms/{rid}/suggestions/{second}", {"status": "forwarded"}
        )
        assert status == 200 and body["status"] == "forwarded"
        await member.close()
        await host.close()
    # The node restarts: the suggestions and their handling are still there.
    async with run_server(data, free_port(), redis_url=redis_url) as server:
        status, body = await server.request("GET", f"/api/rooms/{rid}/suggestions")
        assert status == 200, body
        assert [(s["id"], s["status"], s["reply"]) for s in body["suggestions"]] == [
            (first, "answered", "已列入明年预算"),
            (second, "forwarded", None),
        ]
        # The record and the minutes carry them under their item, with status and reply.
        store = server.app[appkeys.STORE]
        record = session_record(
            await live_room_source(store, rid), await room_suggestions(store, rid)
        )
        assert [(s.id, s.status, s.category_label) for s in record.suggestions] == [
            (first, "answered", "生态环境"),
            (second, "forwarded", "生态环境"),
        ]
        markdown = minutes_markdown(record)
        item = markdown.split("### 1. 开场", 1)[1].split("### 2.", 1)[0]
        section = item.split("#### 建议", 1)[1].split("####", 1)[0]
        assert SECRET in section and "市生态环境局" in section
        assert "已答复" in section and "已列入明年预算" in section and "已转交" in section


async def test_a_successor_owner_keeps_the_suggestions(server: ServerHandle) -> None:
    from server.rooms.room_state import RoomState

    room = await server.create_room()
    rid = room["id"]
    member = await server.client(rid, "m1", "member", "zhuzhou")
    first = (await member.call("suggestion_submit", IDEA))["suggestion"]["id"]
    owned = server.owned_room(rid)
    assert owned is not None
    # What the owner writes behind is what a successor starts from: the next one is s2.
    successor = RoomState.from_persisted(owned.state.room, owned.persisted(), [])
    assert list(successor.suggestions) == [first] and successor.suggestion_next == 2
    assert successor.suggestions[first].body == SECRET
    await member.close()


async def test_across_nodes_and_after_the_owner_dies(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3") as c:
        a, b = c.nodes
        room_id = await c.create_room(id="sugg")
        host = await c.client(a, room_id, "host", "host", "hunan")
        # Over REST on B (which does not own the room): relayed to the owner on A.
        token = await c.token(room_id, "m1", "member", "zhuzhou", b)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{b.base_url}/api/rooms/{room_id}/suggestions",
                json=IDEA,
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 201, await response.text()
            first = (await response.json())["suggestion"]["id"]
        # Over a socket held by B.
        member = RoomClient(b.base_url, token)
        await member.connect()
        second = (await member.call("suggestion_submit", {**IDEA, "title": "第二条"}))[
            "suggestion"
        ]["id"]
        await host.wait_for(
            lambda: (
                {p["suggestion"]["id"] for e, p in host.received if e == "suggestion"}
                == {first, second}
            )
        )
        # The owner dies: what it acknowledged is in Redis, and B lists it.
        await a.kill()
        status, body = await c.request(b, "GET", f"/api/rooms/{room_id}/suggestions")
        assert status == 200, body
        assert [s["id"] for s in body["suggestions"]] == [first, second]
        await member.close()
        await host.close()
