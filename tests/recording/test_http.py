"""The recordings REST API on a real server, with aiortc participants over the real protocol.

The app is built exactly as the integration should build it: ``create_app``,
then ``recordings_ctx`` appended to its cleanup contexts and ``add_routes``.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from server import appkeys
from server.appkeys import RECORDING_SERVICE
from server.http.recordings import access_token
from server.recording.cli_progress import RenderFailed, progress_line, render_and_watch
from signaling.client import RoomClient
from tests.helpers import ServerHandle
from tests.processes import REPO
from tests.recording.recording_kit import recording_server, wait_for
from tests.session_peer import SessionPeer


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def call(
    server: ServerHandle, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with server.http.request(
        method, server.base_url + path, headers=headers, **kwargs
    ) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def test_host_records_and_the_archive_serves_the_files(server: ServerHandle) -> None:
    room = await server.create_room()
    room_id = room["id"]
    other = await server.create_room(id="other-room")
    host_token = await server.token(room_id, "host", "host", "hunan", name="主持人甲")
    member_token = await server.token(room_id, "m1", "member", "shifeng", name="陈静怡")
    foreign_host = await server.token(other["id"], "host", "host", "hunan")
    host = SessionPeer(server.base_url, host_token, 1, amplitude=0.3)
    member = SessionPeer(server.base_url, member_token, 2, amplitude=0.3)
    try:
        for peer in (host, member):
            await peer.join()
            await peer.publish()
        await host.wait_for(lambda: host.frames_from("m1", "video") > 5)
        start = f"/api/rooms/{room_id}/recording/start"

        # Only the API key or this session's host may start.
        assert (await call(server, "POST", start))[0] == 401
        status, body = await call(server, "POST", start, member_token)
        assert (status, body["error"]["code"]) == (401, "not_host")
        assert (await call(server, "POST", start, foreign_host))[0] == 401
        assert (await call(server, "POST", start, "not-a-token"))[0] == 401
        status, body = await call(server, "POST", start, host_token)
        assert status == 201, body
        assert body["state"] == "recording" and body["started_by"] == "host:host"
        recording_id = body["id"]
        status, body = await call(server, "POST", start, server.api_key)
        assert (status, body["error"]["code"]) == (409, "already_recording")

        service = server.app[RECORDING_SERVICE]
        recording = service.recording(room_id)
        assert recording is not None

        def video_frames() -> int:
            return sum(
                r.file.frames for r in recording.recorders.values() if r.track.kind == "video"
            )

        await host.wait_for(lambda: video_frames() >= 60)
        await host.signaling.grant_floor("m1")
        await host.wait_for(lambda: video_frames() >= 120)
        await host.signaling.revoke_floor()
        status, body = await call(
            server, "POST", f"/api/rooms/{room_id}/recording/stop", host_token
        )
        assert status == 200 and body["state"] == "stopped" and body["complete"], body
        status, body = await call(
            server, "POST", f"/api/rooms/{room_id}/recording/stop", host_token
        )
        assert (status, body["error"]["code"]) == (409, "not_recording")
    finally:
        await host.close()
        await member.close()

    # Listing and search (API key only).
    assert (await call(server, "GET", "/api/recordings"))[0] == 401
    assert (await call(server, "GET", "/api/recordings", host_token))[0] == 401
    key = server.api_key
    status, body = await call(server, "GET", "/api/recordings", key)
    assert status == 200 and [r["id"] for r in body["recordings"]] == [recording_id]
    assert body["recordings"][0]["title"] == "清水塘新城建设专题协商会"
    assert body["render"][recording_id]["state"] == "none"
    for query, hits in (
        ({"q": "新城建设"}, 1),
        ({"q": "城市更新"}, 0),
        ({"venue": "shifeng"}, 1),
        ({"venue": "national"}, 0),
        ({"speaker": "陈静怡"}, 1),
        ({"speaker": "nobody"}, 0),
        ({"from": "2000-01-01", "to": "2000-01-02"}, 0),
        ({"from": time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))}, 1),
        ({"to": "2100-01-01T00:00:00Z", "q": "协商会"}, 1),
    ):
        status, body = await call(server, "GET", "/api/recordings", key, params=query)
        assert status == 200 and len(body["recordings"]) == hits, query
    status, body = await call(server, "GET", "/api/recordings", key, params={"from": "yesterday"})
    assert (status, body["error"]["code"]) == (422, "invalid_request")

    # Detail: manifest with the timeline's floor events as chapters, and a file access token.
    status, detail = await call(server, "GET", f"/api/recordings/{recording_id}", key)
    assert status == 200
    manifest = detail["manifest"]
    assert manifest["state"] == "stopped" and manifest["complete"]
    assert {p["identity"]: p["level"] for p in manifest["participants"]} == {
        "host": "provincial",
        "m1": "county",
    }
    assert [c["title"] for c in manifest["chapters"] if c["kind"] == "speaker"] == ["陈静怡"]
    assert {"floor_granted", "floor_revoked"} <= {e["type"] for e in manifest["timeline"]}
    files = {f["name"]: f for f in manifest["files"]}
    assert len(files) == 4 and detail["render"]["state"] == "none"
    folder = server.app[RECORDING_SERVICE].directory(recording_id)
    name = next(n for n, f in files.items() if f["kind"] == "video" and f["participant"] == "host")
    content = (folder / name).read_bytes()
    url = f"/api/recordings/{recording_id}/files/{name}"

    # Whole file and byte ranges.
    async with server.http.get(server.base_url + url, headers=_auth(key)) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "video/webm"
        assert await response.read() == content
    headers = {**_auth(key), "Range": "bytes=100-1099"}
    async with server.http.get(server.base_url + url, headers=headers) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-1099/{len(content)}"
        assert await response.read() == content[100:1100]
    async with server.http.get(
        server.base_url + url, headers={**_auth(key), "Range": "bytes=-500"}
    ) as response:
        assert response.status == 206 and await response.read() == content[-500:]

    # A <video> element has no Authorization header: the access token from the detail works,
    # for this recording only, until it expires.
    access = detail["access"]
    async with server.http.get(server.base_url + url, params={"access": access}) as response:
        assert response.status == 200 and await response.read() == content
    expired = access_token(key, recording_id, int(time.time()) - 10)
    forged = access_token("wrong secret", recording_id, int(time.time()) + 3600)
    for bad in (expired, forged, "", "123.abc", access + "x"):
        status, _ = await call(server, "GET", url, params={"access": bad})
        assert status == 401, bad

    # Bad ids and names never reach the disk; only the manifest's files are served.
    (folder / "secret.txt").write_text("not a recording file")
    os.symlink("/etc/hostname", folder / "link.webm")
    for path in (
        f"/api/recordings/{recording_id}/files/manifest.json",
        f"/api/recordings/{recording_id}/files/tracks.jsonl",
        f"/api/recordings/{recording_id}/files/secret.txt",
        f"/api/recordings/{recording_id}/files/link.webm",
        f"/api/recordings/{recording_id}/files/..%2F..%2Fapi-key",
        f"/api/recordings/{recording_id}/files/%2E%2E",
        f"/api/recordings/{recording_id}/files/.hidden",
        f"/api/recordings/{recording_id}/files/{name}.part",
        f"/api/recordings/{recording_id}/files/{name.upper()}",
        f"/api/recordings/..%2F{recording_id}/files/{name}",
        f"/api/recordings/{recording_id.upper()}/files/{name}",
        f"/api/recordings/{'a' * 200}/files/{name}",
        f"/api/recordings/no-such-recording/files/{name}",
    ):
        status, body = await call(server, "GET", path, key)
        assert status == 404, (path, status, body)
    for raw in (
        f"/api/recordings/{recording_id}/files/../../api-key",
        "/api/recordings/../api-key",
    ):
        async with server.http.get(
            server.base_url + raw, headers=_auth(key), allow_redirects=False
        ) as response:
            assert response.status in (404, 400), raw
            assert b"secret" not in await response.read()

    # The symlink trick also fails when a listed file itself is replaced by a link.
    original = folder / name
    original.rename(folder / "moved.webm")
    os.symlink("/etc/hostname", original)
    assert (await call(server, "GET", url, key))[0] == 404
    original.unlink()
    (folder / "moved.webm").rename(original)

    # `yitang archive render ID`: queue over the API, a worker renders, the bar reaches 100 %.
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.recording.worker",
        "--redis-url",
        server.app[appkeys.REDIS_URL],
        "--burst",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        output = io.StringIO()
        final = await render_and_watch(
            server.base_url, key, recording_id, out=output, interval=0.1, timeout=60
        )
    finally:
        if worker.returncode is None:
            await asyncio.wait_for(worker.wait(), 30)
    assert final.state == "done" and final.progress == 100.0
    lines = output.getvalue().splitlines()
    assert lines[0].endswith("queued") and lines[-1] == progress_line(final)
    assert "100.0% done" in lines[-1]
    status, detail = await call(server, "GET", f"/api/recordings/{recording_id}", key)
    assert detail["manifest"]["combined"]["name"] == "combined.mp4"
    assert detail["summary"]["has_combined"] and detail["render"]["state"] == "done"
    combined = (folder / "combined.mp4").read_bytes()
    combined_url = f"/api/recordings/{recording_id}/files/combined.mp4"
    async with server.http.get(
        server.base_url + combined_url, headers={**_auth(key), "Range": "bytes=0-99"}
    ) as response:
        assert response.status == 206 and response.headers["Content-Type"] == "video/mp4"
        assert await response.read() == combined[:100]
    with pytest.raises(RenderFailed, match="no recording"):
        await render_and_watch(server.base_url, key, "no-such-recording", out=io.StringIO())

    # Deletion removes files and the index entry.
    assert (await call(server, "DELETE", f"/api/recordings/{recording_id}", host_token))[0] == 401
    assert (await call(server, "DELETE", f"/api/recordings/{recording_id}", key))[0] == 204
    assert not folder.exists()
    assert (await call(server, "GET", f"/api/recordings/{recording_id}", key))[0] == 404
    assert (await call(server, "GET", url, key))[0] == 404


async def test_retention_sweep_deletes_old_recordings(server: ServerHandle) -> None:
    room = await server.create_room()
    host_token = await server.token(room["id"], "host", "host", "hunan")
    host = SessionPeer(server.base_url, host_token, 1)
    try:
        await host.join()
        await host.publish()
        status, body = await call(
            server, "POST", f"/api/rooms/{room['id']}/recording/start", host_token
        )
        assert status == 201
        service = server.app[RECORDING_SERVICE]
        recording = service.recording(room["id"])
        assert recording is not None
        await wait_for(
            lambda: any(r.file.frames > 10 for r in recording.recorders.values()), "frames"
        )
        await call(server, "POST", f"/api/rooms/{room['id']}/recording/stop", server.api_key)
    finally:
        await host.close()
    recording_id = body["id"]
    assert await service.sweep_retention() == []  # 30 days have not passed
    assert await service.sweep_retention(now=time.time() + 31 * 86400) == [recording_id]
    assert not service.directory(recording_id).exists()
    status, listing = await call(server, "GET", "/api/recordings", server.api_key)
    assert listing["recordings"] == []


async def test_a_removed_host_can_no_longer_start_or_stop_recording(server: ServerHandle) -> None:
    room = await server.create_room()
    room_id = room["id"]
    removed_token = await server.token(room_id, "host", "host", "hunan")
    cohost = await server.client(room_id, "cohost", "host", "hunan")
    removed = RoomClient(server.base_url, removed_token)
    try:
        await removed.connect()
        await cohost.remove("host", reason="换人主持")
        await removed.wait_for(lambda: removed.disconnected.is_set())
    finally:
        await removed.close()
        await cohost.close()
    # The token is still correctly signed and names a host of this room: only the
    # session's admission check knows the host was removed.
    for action in ("start", "stop"):
        status, body = await call(
            server, "POST", f"/api/rooms/{room_id}/recording/{action}", removed_token
        )
        assert (status, body["error"]["code"]) == (403, "removed"), (action, body)
    # A host token of a session that no longer exists is refused the same way.
    assert (await server.request("DELETE", f"/api/rooms/{room_id}"))[0] == 204
    status, body = await call(
        server, "POST", f"/api/rooms/{room_id}/recording/start", removed_token
    )
    assert (status, body["error"]["code"]) == (404, "room_not_found")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
