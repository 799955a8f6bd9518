"""REST API: happy paths and every class of error, against a real server and Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ROOM_SPEC, ServerHandle


async def test_health_needs_no_key(server: ServerHandle) -> None:
    async with server.http.get(server.base_url + "/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["redis"] == "ok"


async def test_room_life_cycle(server: ServerHandle) -> None:
    room = await server.create_room()
    assert room["id"].startswith("room-")
    assert [v["level"] for v in room["venues"]] == ["national", "provincial", "city", "county"]

    status, listing = await server.request("GET", "/api/rooms")
    assert status == 200
    assert [row["room"]["id"] for row in listing["rooms"]] == [room["id"]]
    assert listing["rooms"][0]["live"]["status"] == "scheduled"

    status, detail = await server.request("GET", f"/api/rooms/{room['id']}")
    assert status == 200
    assert detail["room"]["title"] == ROOM_SPEC["title"]
    assert detail["participants"] == []

    status, _ = await server.request("DELETE", f"/api/rooms/{room['id']}")
    assert status == 204
    status, body = await server.request("GET", f"/api/rooms/{room['id']}")
    assert status == 404
    assert body["error"]["code"] == "room_not_found"


async def test_token_issue_returns_join_link_and_records_roster(server: ServerHandle) -> None:
    room = await server.create_room(id="qingshuitang")
    status, body = await server.request(
        "POST",
        "/api/rooms/qingshuitang/tokens",
        {"identity": "m1", "name": "陈静怡", "role": "member", "venue": "zhuzhou"},
    )
    assert status == 201
    assert body["url"] == f"{server.base_url}/join?token={body['token']}"
    _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
    assert detail["roster"] == [
        {"identity": "m1", "name": "陈静怡", "role": "member", "venue": "zhuzhou"}
    ]


async def test_join_page_is_served(server: ServerHandle) -> None:
    async with server.http.get(server.base_url + "/join?token=x") as response:
        assert response.status == 200
        assert "text/html" in response.headers["Content-Type"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "api_key_missing"), ({"Authorization": "Bearer wrong"}, "api_key_invalid")],
)
async def test_admin_calls_need_the_api_key(
    server: ServerHandle, headers: dict[str, str], code: str
) -> None:
    async with server.http.get(server.base_url + "/api/rooms", headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == code


async def _post_raw(server: ServerHandle, path: str, data: bytes) -> tuple[int, Any]:
    async with server.http.post(
        server.base_url + path,
        data=data,
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_malformed_json_is_400(server: ServerHandle, data: bytes) -> None:
    status, body = await _post_raw(server, "/api/rooms", data)
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


async def test_oversized_body_is_413(server: ServerHandle) -> None:
    spec = {**ROOM_SPEC, "topic": "x" * 100_000}
    status, body = await _post_raw(server, "/api/rooms", json.dumps(spec).encode())
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def _without_main() -> list[dict[str, Any]]:
    return [{**venue, "main": False} for venue in ROOM_SPEC["venues"]]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"venues": _without_main()}, "exactly one venue must be the main venue"),
        ({"venues": [*ROOM_SPEC["venues"], {**ROOM_SPEC["venues"][1], "id": "x"}]}, "exactly one"),
        ({"venues": [*ROOM_SPEC["venues"], ROOM_SPEC["venues"][0]]}, "venue ids must be unique"),
        ({"venues": []}, "venues"),
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": "bad\x00title"}, "control"),
        ({"scheduled_start": "2026-12-01T09:00:00"}, "time zone"),
        ({"scheduled_start": "tomorrow"}, "scheduled_start"),
        ({"role": "host"}, "role"),
        ({"id": "Bad Id!"}, "id"),
        ({"venues": [{**ROOM_SPEC["venues"][1], "level": "village"}]}, "level"),
        ({"agenda": [{"title": "x"}] * 101}, "agenda"),
    ],
)
async def test_invalid_room_specs_are_422_and_create_nothing(
    server: ServerHandle, change: dict[str, Any], fragment: str
) -> None:
    status, body = await server.request("POST", "/api/rooms", {**ROOM_SPEC, **change})
    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    assert fragment in body["error"]["message"]
    _, listing = await server.request("GET", "/api/rooms")
    assert listing["rooms"] == []


async def test_duplicate_room_id_is_409(server: ServerHandle) -> None:
    await server.create_room(id="same")
    status, body = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "id": "same"})
    assert status == 409
    assert body["error"]["code"] == "room_exists"


@pytest.mark.parametrize(
    ("invitee", "status", "code"),
    [
        (
            {"identity": "x", "name": "X", "role": "member", "venue": "nowhere"},
            422,
            "unknown_venue",
        ),
        (
            {"identity": "x", "name": "X", "role": "host", "venue": "zhuzhou"},
            422,
            "host_not_at_main_venue",
        ),
        ({"identity": "x", "name": "X", "role": "chair", "venue": "hunan"}, 422, "invalid_request"),
        (
            {"identity": "bad id", "name": "X", "role": "member", "venue": "hunan"},
            422,
            "invalid_request",
        ),
        (
            {"identity": "x", "name": "X" * 65, "role": "member", "venue": "hunan"},
            422,
            "invalid_request",
        ),
        (
            {"identity": "x", "name": "X", "role": "member", "venue": "hunan", "room": "y"},
            422,
            "invalid_request",
        ),
    ],
)
async def test_bad_token_requests(
    server: ServerHandle, invitee: dict[str, Any], status: int, code: str
) -> None:
    room = await server.create_room()
    got, body = await server.request("POST", f"/api/rooms/{room['id']}/tokens", invitee)
    assert got == status
    assert body["error"]["code"] == code
    _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
    assert detail["roster"] == []


@pytest.mark.parametrize(
    "path", ["/api/rooms/nope", "/api/rooms/..%2F..%2Fetc", "/api/rooms/" + "a" * 60]
)
async def test_unknown_rooms_are_404(server: ServerHandle, path: str) -> None:
    status, body = await server.request("GET", path)
    assert status == 404
    assert body["error"]["code"] in ("room_not_found", "not_found")


async def test_tokens_for_unknown_room_are_404(server: ServerHandle) -> None:
    status, body = await server.request(
        "POST",
        "/api/rooms/nope/tokens",
        {"identity": "x", "name": "X", "role": "member", "venue": "hunan"},
    )
    assert status == 404
    assert body["error"]["code"] == "room_not_found"


async def test_unknown_route_and_method_are_json_errors(server: ServerHandle) -> None:
    status, body = await server.request("GET", "/api/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await server.request("PUT", "/api/rooms")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


async def test_openapi_describes_every_endpoint(server: ServerHandle) -> None:
    async with server.http.get(server.base_url + "/api/openapi.json") as response:
        spec = await response.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert set(paths["/api/rooms"]) == {"get", "post"}
    assert set(paths["/api/rooms/{room_id}"]) == {"get", "delete"}
    assert set(paths["/api/rooms/{room_id}/tokens"]) == {"post"}
    assert set(paths["/api/rooms/{room_id}/recording/start"]) == {"post"}
    assert set(paths["/api/recordings"]) == {"get"}
    assert set(paths["/api/recordings/{recording_id}"]) == {"get", "delete"}
    file_route = paths["/api/recordings/{recording_id}/files/{name}"]["get"]
    assert [p["name"] for p in file_route["parameters"]] == ["recording_id", "name"]
    assert "/healthz" in paths
    create = paths["/api/rooms"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RoomSpec"
    )
    assert "201" in create["responses"] and "422" in create["responses"]
    schemas = spec["components"]["schemas"]
    assert {"RoomSpec", "Room", "Venue", "TokenRequest", "TokenResponse", "ErrorBody"} <= set(
        schemas
    )
    # Every reference resolves.
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
