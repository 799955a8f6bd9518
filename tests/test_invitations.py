"""Invitations: a clashing identity is refused, links are kept for the organizer, and a
join link is checked before the device check (saying what is wrong, and nothing more)."""

from __future__ import annotations

import time

import pytest

from server import appkeys
from server.rooms.models import Invitee, Role
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def _issue(server: ServerHandle, room_id: str, **body: object) -> tuple[int, dict]:
    status, answer = await server.request("POST", f"/api/rooms/{room_id}/tokens", body)
    return status, answer


async def test_an_identity_invited_with_another_role_or_venue_is_refused_unless_replaced(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = {"identity": "chair", "name": "李主席", "role": "host", "venue": "hunan"}
    status, first = await _issue(server, rid, **host)
    assert status == 201
    # The same invitation again (a fresh link) is fine; so is a corrected name.
    assert (await _issue(server, rid, **host))[0] == 201
    assert (await _issue(server, rid, **{**host, "name": "李国华"}))[0] == 201

    as_member = {**host, "role": "member", "venue": "zhuzhou"}
    status, body = await _issue(server, rid, **as_member)
    assert status == 409
    assert body["error"]["code"] == "identity_taken"
    assert "host" in body["error"]["message"] and "hunan" in body["error"]["message"]
    status, body = await _issue(server, rid, **{**host, "venue": "hunan", "role": "guest"})
    assert status == 409
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert detail["roster"] == [{**host, "name": "李国华"}]

    status, body = await _issue(server, rid, **as_member, replace=True)
    assert status == 201, body
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert detail["roster"] == [as_member]
    # The links made before the change are void: nobody joins as the host with them.
    status, refused = await _check(server, first["token"])
    assert status == 401 and refused["error"]["code"] == "token_replaced"
    with pytest.raises(SignalingError) as connect:
        await RoomClient(server.base_url, first["token"]).connect()
    assert connect.value.code == "token_replaced"
    member = RoomClient(server.base_url, body["token"])
    await member.connect()
    assert member.you.role.value == "member" and member.you.venue == "zhuzhou"
    await member.close()


async def test_issued_links_are_shown_again_with_their_expiry(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    _, first = await _issue(
        server, rid, identity="m1", name="张委员", role="member", venue="zhuzhou", ttl_seconds=3600
    )
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    [invitation] = detail["invitations"]
    assert invitation["identity"] == "m1"
    assert invitation["url"] == first["url"]
    assert invitation["expires_at"] == first["expires_at"]
    assert abs(invitation["expires_at"] - (time.time() + 3600)) < 60
    # A new link replaces the one shown.
    _, second = await _issue(
        server, rid, identity="m1", name="张委员", role="member", venue="zhuzhou"
    )
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert [i["url"] for i in detail["invitations"]] == [second["url"]]
    # A refused invitation leaves the shown link alone.
    await _issue(server, rid, identity="m1", name="张委员", role="observer", venue="zhuzhou")
    _, detail = await server.request("GET", f"/api/rooms/{rid}")
    assert [i["url"] for i in detail["invitations"]] == [second["url"]]


async def test_planned_speakers_may_be_named_before_anyone_is_invited(
    server: ServerHandle,
) -> None:
    room = await server.create_room(
        agenda=[{"title": "通报", "planned_speakers": ["株洲市发改委 王主任", "m1"]}]
    )
    assert room["agenda"][0]["planned_speakers"] == ["株洲市发改委 王主任", "m1"]
    status, _ = await server.request(
        "POST",
        "/api/rooms",
        {**room, "id": "x", "agenda": [{"title": "a", "planned_speakers": ["\u0007"]}]},
    )
    assert status == 422


async def _check(server: ServerHandle, token: object) -> tuple[int, dict]:
    async with server.http.post(
        server.base_url + "/api/join/check", json={"token": token}
    ) as response:
        return response.status, await response.json()


async def test_a_join_link_is_checked_before_the_device_check(server: ServerHandle) -> None:
    room = await server.create_room(title="清水塘协商会")
    rid = room["id"]
    token = await server.token(rid, "m1", "member", "zhuzhou", name="张委员")
    status, body = await _check(server, token)
    assert status == 200, body
    assert body["identity"] == "m1" and body["name"] == "张委员" and body["role"] == "member"
    assert body["venue_name"] == "株洲市政协会场"
    assert body["title"] == "清水塘协商会"
    assert body["status"] == "scheduled" and body["recording"] is False
    assert body["locked"] is False and body["lobby"] is False

    # Garbled, or signed with another key: nothing but "not valid".
    status, body = await _check(server, token[:-4] + "AAAA")
    assert (status, body) == (
        401,
        {"error": {"code": "token_invalid", "message": "the join token is not valid"}},
    )
    status, body = await _check(server, "not-a-token")
    assert status == 401 and body["error"]["code"] == "token_invalid"
    status, body = await _check(server, "")
    assert status == 401 and body["error"]["code"] == "token_missing"
    status, body = await _check(server, "x" * 5000)
    assert status == 422

    # Expired.
    catalog = server.app[appkeys.CATALOG]
    invitee = Invitee(identity="m2", name="刘委员", role=Role.MEMBER, venue="shifeng")
    incarnation = (await catalog.get_room(rid)).incarnation
    expired, _ = catalog.signer.issue(rid, invitee, -60, incarnation)
    status, body = await _check(server, expired)
    assert status == 401 and body["error"]["code"] == "token_expired"

    # Removed, ended, deleted.
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    await host.remove("m1")
    await member.wait_for(lambda: member.disconnected.is_set())
    status, body = await _check(server, token)
    assert status == 403 and body["error"]["code"] == "removed"
    other = await server.token(rid, "m3", "member", "national")
    await host.end_session()
    status, body = await _check(server, other)
    assert status == 409 and body["error"]["code"] == "session_ended"
    await host.close()
    assert (await server.request("DELETE", f"/api/rooms/{rid}"))[0] == 204
    status, body = await _check(server, other)
    assert status == 404 and body["error"]["code"] == "room_not_found"


async def test_join_checks_are_limited_per_address(server: ServerHandle) -> None:
    statuses = [(await _check(server, "x"))[0] for _ in range(40)]
    assert statuses[0] == 401
    assert 429 in statuses
