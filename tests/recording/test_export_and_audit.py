"""Export of a session's whole record (one ZIP with a checksum list) and audited deletion."""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.parse
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import docx
import pytest
import redis.asyncio as aioredis

from server.appkeys import RECORDING_SERVICE
from signaling.client import RoomClient
from tests.helpers import ServerHandle
from tests.recording.recording_kit import build_session, recording_server


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def fetch(
    server: ServerHandle, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {server.api_key}", **(headers or {})}
    async with server.http.get(server.base_url + path, headers=headers) as response:
        return response.status, response.content_type, await response.read()


async def test_export_holds_everything_with_checksums_and_deletion_is_audited(
    server: ServerHandle,
) -> None:
    service = server.app[RECORDING_SERVICE]
    recording_id = "room-1-20261201-090000-e1e1"
    folder = service.config.recordings_dir / recording_id
    manifest = build_session(folder, 1.0, recording_id)
    assert [r.id for r in await service.recover()] == []  # indexes the finished folder

    status, content_type, body = await fetch(server, f"/api/recordings/{recording_id}/export")
    assert status == 200 and content_type == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body))
    names = {n.removeprefix(f"{recording_id}/") for n in archive.namelist()}
    media = {f.name for f in manifest.files}
    assert names == media | {
        "manifest.json",
        "minutes.docx",
        "minutes.md",
        "attendance.csv",
        "record.json",
        "SHA256SUMS",
    }
    # Every member but the list itself is listed, with the checksum of what is in the ZIP.
    sums = archive.read(f"{recording_id}/SHA256SUMS").decode().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums}
    assert set(listed) == names - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256(archive.read(f"{recording_id}/{name}")).hexdigest() == digest
    for name in media:  # the original files, byte for byte
        assert archive.read(f"{recording_id}/{name}") == (folder / name).read_bytes()
    minutes = docx.Document(io.BytesIO(archive.read(f"{recording_id}/minutes.docx")))
    assert minutes.paragraphs[0].text == "清水塘新城建设专题协商会 会议纪要（草稿）"
    record = json.loads(archive.read(f"{recording_id}/record.json"))
    assert [s["name"] for s in record["speaking"]["speeches"]] == ["陈静怡"]
    assert "陈静怡" in archive.read(f"{recording_id}/attendance.csv").decode("utf-8-sig")

    status, _, body = await fetch(server, f"/api/recordings/{recording_id}/export?zip=1")
    assert status == 422
    status, _, _ = await fetch(server, "/api/recordings/no-such-one/export")
    assert status == 404
    async with server.http.get(f"{server.base_url}/api/recordings/{recording_id}/export") as r:
        assert r.status == 401

    # Deleting: the operator's name (percent-encoded UTF-8) is checked, then audited.
    bad = {"Authorization": f"Bearer {server.api_key}", "X-Yitang-Operator": "%FF%FE"}
    async with server.http.delete(
        f"{server.base_url}/api/recordings/{recording_id}", headers=bad
    ) as response:
        assert response.status == 422
    assert (await server.request("GET", f"/api/recordings/{recording_id}"))[0] == 200
    before = time.time()
    status, _ = await server.request(
        "DELETE",
        f"/api/recordings/{recording_id}",
        headers={"X-Yitang-Operator": urllib.parse.quote("张秘书")},
    )
    assert status == 204
    assert (await server.request("GET", f"/api/recordings/{recording_id}"))[0] == 404
    assert not folder.exists()
    status, audit = await server.request("GET", "/api/audit", params={"recording": recording_id})
    assert status == 200
    [entry] = audit["entries"]
    assert entry["action"] == "recording_deleted" and entry["by"] == "api"
    assert (entry["operator"], entry["address"]) == ("张秘书", "127.0.0.1")
    assert entry["title"] == "清水塘新城建设专题协商会" and entry["at"] >= before - 1
    assert {f["name"] for f in entry["files"]} == media
    assert entry["bytes"] == sum(f.size for f in manifest.files)

    # Retention deletes are audited too.
    old_id = "room-1-20261101-090000-e2e2"
    build_session(service.config.recordings_dir / old_id, 0.5, old_id)
    await service.recover()
    assert await service.sweep_retention(now=time.time() + 31 * 86400) == [old_id]
    status, audit = await server.request("GET", "/api/audit", params={"limit": "2"})
    assert [(e["recording_id"], e["by"]) for e in audit["entries"]] == [
        (old_id, "retention"),
        (recording_id, "api"),
    ]
    for params in ({"limit": "0"}, {"recording": "../x"}, {"who": "me"}):
        status, body = await server.request("GET", "/api/audit", params=params)
        assert status == 422, params


async def test_a_recording_in_progress_cannot_be_exported(server: ServerHandle) -> None:
    room = await server.create_room()
    host = RoomClient(server.base_url, await server.token(room["id"], "host", "host", "hunan"))
    try:
        await host.connect()
        status, info = await server.request("POST", f"/api/rooms/{room['id']}/recording/start")
        assert status == 201
        status, body = await server.request("GET", f"/api/recordings/{info['id']}/export")
        assert (status, body["error"]["code"]) == (409, "recording_running")
        status, body = await server.request("GET", f"/api/recordings/{info['id']}/attendance")
        assert (status, body["error"]["code"]) == (409, "recording_running")
        status, _ = await server.request("POST", f"/api/rooms/{room['id']}/recording/stop")
        assert status == 200
    finally:
        await host.close()
