"""Attendance and the speaking record of a session driven by real clients, over REST.

The times reported must match the test's own clock of each step within 1 s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.helpers import ServerHandle
from tests.recording.recording_kit import recording_server
from tests.recording.session_scenario import NAMES, Recorded, run_recorded_session

TOLERANCE = 1.0


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


def near(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) <= TOLERANCE


def people(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        p["identity"]: {**p, "level": level["level"], "venue": venue["id"]}
        for level in record["levels"]
        for venue in level["venues"]
        for p in venue["participants"]
    }


async def text(server: ServerHandle, path: str) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with server.http.get(server.base_url + path, headers=headers) as response:
        return response.status, response.content_type, await response.text()


def check_attendance(record: dict[str, Any], run: Recorded) -> None:
    at = run.at
    assert [level["level"] for level in record["levels"]] == [
        "national",
        "provincial",
        "city",
        "county",
    ]
    by_level = {level["level"]: level for level in record["levels"]}
    assert {k: (v["invited"], v["attended"], v["absent"]) for k, v in by_level.items()} == {
        "national": (1, 0, 1),
        "provincial": (1, 1, 0),
        "city": (1, 1, 0),
        "county": (1, 1, 0),
    }
    assert (record["invited"], record["attended"], record["absent"]) == (4, 3, 1)
    found = people(record)
    assert {i: p["name"] for i, p in found.items()} == NAMES
    m3 = found["m3"]
    assert m3["absent"] and m3["first_join"] is None and m3["present_seconds"] == 0

    m1 = found["m1"]
    assert not m1["absent"] and m1["reconnections"] == 0 and not m1["present_at_end"]
    assert near(m1["first_join"], at["m1_join"]) and near(m1["last_leave"], at["m1_leave"])
    assert near(m1["present_seconds"], at["m1_leave"] - at["m1_join"])

    m2 = found["m2"]
    assert m2["reconnections"] == 1 and m2["venue"] == "zhuzhou" and m2["level"] == "city"
    assert near(m2["first_join"], at["m2_join"])


async def test_attendance_and_speaking_record_match_what_the_clients_did(
    server: ServerHandle,
) -> None:
    run = await run_recorded_session(server)
    at = run.at
    rec = f"/api/recordings/{run.recording_id}"

    # --- attendance of the recording -------------------------------------------------------
    status, record = await server.request("GET", f"{rec}/attendance")
    assert status == 200, record
    check_attendance(record, run)
    found = people(record)
    host, m2 = found["host"], found["m2"]
    # The host was there when recording started, and still is when it stopped.
    assert host["present_at_end"] and host["last_leave"] is None
    assert near(host["first_join"], at["recording_start"])
    assert near(host["present_seconds"], at["recording_stop"] - at["recording_start"])
    # m2 left once and came back: present at the end, so no last leave.
    assert m2["present_at_end"] and m2["last_leave"] is None
    expected_m2 = (at["m2_leave"] - at["m2_join"]) + (at["recording_stop"] - at["m2_rejoin"])
    assert near(m2["present_seconds"], expected_m2)

    # CSV: one row per invitee, Chinese names intact, absent marked.
    status, content_type, body = await text(server, f"{rec}/attendance?format=csv")
    assert status == 200 and content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert {r["identity"]: (r["name"], r["status"]) for r in rows} == {
        "host": ("主持人甲", "present"),
        "m1": ("陈静怡", "left"),
        "m2": ("李明", "present"),
        "m3": ("王芳", "absent"),
    }
    assert next(r for r in rows if r["identity"] == "m2")["reconnections"] == "1"

    # --- speaking record of the recording --------------------------------------------------
    status, speaking = await server.request("GET", f"{rec}/speaking")
    assert status == 200, speaking
    speeches = speaking["speeches"]
    assert [(s["identity"], s["agenda_index"], s["ended_by"]) for s in speeches] == [
        ("m1", 1, "expired"),
        ("m2", 2, "expired"),
        ("m1", 2, "revoked"),
    ]
    first, second, third = speeches
    # m1's 1 s turn was extended by 2 s: one speech of two grants, 2 s over its limit.
    assert first["grants"] == 2 and first["time_limit_seconds"] == 1
    assert near(first["start"], at["m1_grant"]) and near(first["end"], at["m1_extension_expired"])
    held = (at["m1_expired"] - at["m1_grant"]) + (at["m1_extension_expired"] - at["m1_extension"])
    assert near(first["duration"], held)
    assert near(first["overrun_seconds"], held - 1)
    assert first["overrun_seconds"] >= 1.5  # the 2 s extension, not a rounding artefact
    assert near(first["offset"], at["m1_grant"] - at["recording_start"])
    assert (first["name"], first["venue_name"], first["level"]) == (
        "陈静怡",
        "石峰区政协会场",
        "county",
    )
    assert near(second["start"], at["m2_grant"]) and near(second["end"], at["m2_expired"])
    assert near(second["duration"], at["m2_expired"] - at["m2_grant"])
    assert second["overrun_seconds"] == 0 and second["time_limit_seconds"] == 2
    assert near(third["start"], at["m1_grant2"]) and near(third["end"], at["m1_revoked"])
    assert third["time_limit_seconds"] is None

    items = {item["index"]: item for item in speaking["items"]}
    assert [item["title"] for item in speaking["items"]] == ["开场", "情况通报", "协商发言"]
    assert [(p["identity"], p["name"]) for p in items[0]["not_spoken"]] == [("host", "主持人甲")]
    assert items[1]["not_spoken"] == []
    assert [(p["identity"], p["name"]) for p in items[2]["not_spoken"]] == [("m3", "王芳")]
    assert near(items[1]["start"], at["item1"]) and near(items[1]["end"], at["item2"])
    assert near(items[2]["seconds"], at["recording_stop"] - at["item2"])
    totals = {t["identity"]: t for t in speaking["speakers"]}
    assert set(totals) == {"m1", "m2"} and totals["m1"]["speeches"] == 2
    assert near(totals["m1"]["seconds"], first["duration"] + third["duration"])

    # --- the same for the live room (everything since it was created, until now) ---------
    status, live = await server.request("GET", f"/api/rooms/{run.room_id}/attendance")
    assert status == 200 and live["live"] and live["recording_id"] is None
    check_attendance(live, run)
    live_host = people(live)["host"]
    # The live room knows the host's real join, before recording started.
    assert live_host["first_join"] <= host["first_join"]
    status, content_type, body = await text(
        server, f"/api/rooms/{run.room_id}/attendance?format=csv"
    )
    assert status == 200 and "王芳" in body
    status, live_speaking = await server.request("GET", f"/api/rooms/{run.room_id}/speaking")
    assert status == 200
    assert [(s["identity"], s["ended_by"]) for s in live_speaking["speeches"]] == [
        ("m1", "expired"),
        ("m2", "expired"),
        ("m1", "revoked"),
    ]

    # The whole record (what the archive page shows): chat too.
    status, whole = await server.request("GET", f"{rec}/record")
    assert status == 200
    assert [(c["identity"], c["agenda_index"]) for c in whole["chat"]] == [("m1", 1), ("m2", 2)]
    assert near(whole["chat"][0]["at"], at["m1_chat"])
    assert whole["suggestions"] == [] and whole["questions"] == []


async def test_record_endpoints_check_their_input(server: ServerHandle) -> None:
    room = await server.create_room()
    room_id = room["id"]
    for path, code, status in (
        (f"/api/rooms/{room_id}/attendance?format=xml", "invalid_request", 422),
        (f"/api/rooms/{room_id}/attendance?format=csv&format=json", "invalid_request", 422),
        (f"/api/rooms/{room_id}/attendance?fmt=csv", "invalid_request", 422),
        (f"/api/rooms/{room_id}/speaking?x=1", "invalid_request", 422),
        ("/api/rooms/No_Such!/attendance", "room_not_found", 404),
        ("/api/rooms/no-such-room/attendance", "room_not_found", 404),
        ("/api/recordings/no-such-recording/attendance", "recording_not_found", 404),
        ("/api/recordings/Bad..Id/speaking", "recording_not_found", 404),
        ("/api/recordings/no-such-recording/record?format=csv", "invalid_request", 422),
    ):
        got, body = await server.request("GET", path)
        assert (got, body["error"]["code"]) == (status, code), path
    # The API key is required, as for every recording endpoint.
    async with server.http.get(f"{server.base_url}/api/rooms/{room_id}/attendance") as response:
        assert response.status == 401
    async with server.http.get(
        f"{server.base_url}/api/rooms/{room_id}/attendance",
        headers={"Authorization": "Bearer wrong"},
    ) as response:
        assert response.status == 401
    # A room nobody joined yet: everyone invited is absent.
    await server.token(room_id, "m1", "member", "shifeng", name="陈静怡")
    status, record = await server.request("GET", f"/api/rooms/{room_id}/attendance")
    assert status == 200 and (record["invited"], record["attended"]) == (1, 0)

    # The OpenAPI document describes the calls and their query parameters.
    async with server.http.get(f"{server.base_url}/api/openapi.json") as response:
        paths = (await response.json())["paths"]
    for path in (
        "/api/rooms/{room_id}/attendance",
        "/api/rooms/{room_id}/speaking",
        "/api/recordings/{recording_id}/attendance",
        "/api/recordings/{recording_id}/speaking",
        "/api/recordings/{recording_id}/record",
        "/api/recordings/{recording_id}/minutes",
        "/api/recordings/{recording_id}/export",
        "/api/moments",
        "/api/audit",
    ):
        assert "apiKey" in str(paths[path]["get"]["security"]), path
    formats = [p for p in paths["/api/rooms/{room_id}/attendance"]["get"]["parameters"]]
    assert {"name": "format", "enum": ["json", "csv"]}.items() <= {
        "name": formats[-1]["name"],
        "enum": formats[-1]["schema"]["enum"],
    }.items()
