"""The live broadcast, end to end: a real server, aiortc publishers, the worker process, HLS.

What a viewer notices: the playlist appears while the session is live, its
segments decode (FFmpeg, a reader nobody here wrote), the banner's programme
follows the floor, the host can pause and resume, access follows the room's
`broadcast` mode, and a dying worker is replaced while the session goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from server.broadcast.http import BROADCASTS
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle, eventually, require_tool
from tests.session_peer import SessionPeer


async def _get(server: ServerHandle, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    async with server.http.get(server.base_url + path, **kwargs) as response:
        return response.status, await response.read(), response


async def _programme(server: ServerHandle, room_id: str) -> dict[str, Any] | None:
    async with server.http.get(f"{server.base_url}/live/{room_id}/programme.json") as response:
        return await response.json() if response.status == 200 else None


def _segments(playlist: bytes) -> list[str]:
    return [line for line in playlist.decode().splitlines() if line.endswith(".ts")]


async def _segment_count(server: ServerHandle, room_id: str) -> int:
    status, body, _ = await _get(server, f"/live/{room_id}/index.m3u8")
    return len(_segments(body)) if status == 200 else 0


async def _peer(
    server: ServerHandle, room_id: str, identity: str, role: str, venue: str, name: str, index: int
) -> SessionPeer:
    token = await server.token(room_id, identity, role, venue, name)
    peer = SessionPeer(server.base_url, token, index, amplitude=0.3)
    await peer.join()
    await peer.publish()
    return peer


async def test_public_broadcast_plays_follows_the_floor_and_decodes(
    server: ServerHandle, tmp_path: Path
) -> None:
    room = await server.create_room(broadcast="public")
    room_id = room["id"]
    status, _, _ = await _get(server, f"/live/{room_id}/index.m3u8")
    assert status == 404  # not live before anyone joined
    host = await _peer(server, room_id, "host", "host", "hunan", "李主持", 1)
    member = await _peer(server, room_id, "m1", "member", "zhuzhou", "张委员", 2)
    try:
        await eventually(
            lambda: _segment_count(server, room_id), "the playlist lists a segment", 40
        )
        programme = await _programme(server, room_id)
        assert programme is not None and programme["speaker"]["name"] == "李主持"
        assert programme["agenda"] == "开场"
        broadcast = server.app[BROADCASTS].broadcasts[room_id]
        await eventually(
            lambda: (
                broadcast.programme is not None
                and broadcast.programme.slot("main") is not None
                and len([t for t in broadcast.programme.tracks if t.kind == "audio"]) == 2
            ),
            "the worker receives the host's video and both microphones",
            20,
        )

        await host.signaling.grant_floor("m1")

        async def banner_names_member() -> bool:
            shown = await _programme(server, room_id)
            return shown is not None and (shown["speaker"] or {}).get("name") == "张委员"

        await eventually(banner_names_member, "the banner names the new floor holder", 5)
        shown = await _programme(server, room_id)
        assert shown is not None and shown["speaker"]["venue"] == "株洲市政协会场"
        assert shown["has_floor"] is True
        assert broadcast.programme is not None
        main = broadcast.programme.slot("main")
        corner = broadcast.programme.slot("corner")
        assert main is not None and main.identity == "m1"
        assert corner is not None and corner.identity == "host"

        # Two more segments, made while both cameras were decoded.
        first = await _last_segment(server, room_id)
        await eventually(lambda: _segment_after(server, room_id, first + 2), "two new segments", 30)
        playlist_status, playlist, response = await _get(server, f"/live/{room_id}/index.m3u8")
        assert playlist_status == 200
        assert response.headers["Cache-Control"] == "public, max-age=1"
        files = []
        for name in _segments(playlist)[-3:]:
            seg_status, data, seg_response = await _get(server, f"/live/{room_id}/{name}")
            assert seg_status == 200
            assert "immutable" in seg_response.headers["Cache-Control"]
            files.append(tmp_path / name)
            files[-1].write_bytes(data)
        _decodes_with_ffmpeg(files)
    finally:
        await member.close()
        await host.close()


async def _last_segment(server: ServerHandle, room_id: str) -> int:
    """The number of the newest segment listed (-1: none)."""
    status, body, _ = await _get(server, f"/live/{room_id}/index.m3u8")
    names = _segments(body) if status == 200 else []
    return int(names[-1].rsplit("-", 1)[1].split(".")[0]) if names else -1


async def _segment_after(server: ServerHandle, room_id: str, wanted: int) -> bool:
    return await _last_segment(server, room_id) >= wanted


def _decodes_with_ffmpeg(files: list[Path]) -> None:
    """Each segment is H.264 720p + AAC, and FFmpeg decodes all of them without one error."""
    with av.open(str(files[-1])) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 1280, 720)
        assert audio.codec_context.name == "aac"
    ffmpeg = require_tool("ffmpeg", "scripts/ensure-ffmpeg")
    concat = "concat:" + "|".join(str(path) for path in files)
    result = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", concat, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


async def _json_error(server: ServerHandle, path: str, **kwargs: Any) -> tuple[int, str]:
    async with server.http.get(server.base_url + path, **kwargs) as response:
        body = await response.json()
        return response.status, body["error"]["code"]


async def test_access_follows_the_broadcast_mode(server: ServerHandle) -> None:
    plain = (await server.create_room())["id"]
    assert await _json_error(server, f"/live/{plain}") == (404, "broadcast_off")
    assert await _json_error(server, f"/live/{plain}/index.m3u8") == (404, "broadcast_off")
    assert await _json_error(server, "/live/no-such-room/index.m3u8") == (404, "room_not_found")
    assert await _json_error(server, "/live/Not_A_Slug/index.m3u8") == (404, "room_not_found")
    plain_host = await server.client(plain, "host", "host", "hunan")
    with pytest.raises(SignalingError) as refused:
        await plain_host.call("broadcast_pause")
    assert refused.value.code == "broadcast_off"
    await plain_host.close()

    room_id = (await server.create_room(broadcast="token"))["id"]
    other_id = (await server.create_room(broadcast="token"))["id"]
    viewer = await server.token(room_id, "v1", "viewer", "zhuzhou")
    member = await server.token(room_id, "m1", "member", "zhuzhou")
    elsewhere = await server.token(other_id, "v1", "viewer", "zhuzhou")
    with pytest.raises(SignalingError) as refused:
        await RoomClient(server.base_url, viewer).connect()
    assert refused.value.code == "viewer_token"
    # A viewer's link opens the broadcast page; viewers are not on the session's roster.
    body = {"identity": "v2", "name": "观众", "role": "viewer", "venue": "zhuzhou"}
    status, issued = await server.request("POST", f"/api/rooms/{room_id}/tokens", body)
    assert status == 201 and f"/live/{room_id}?token=" in issued["url"]
    status, detail = await server.request("GET", f"/api/rooms/{room_id}")
    assert status == 200 and not [i for i in detail["roster"] if i["role"] == "viewer"]
    status, refusal = await server.request("POST", f"/api/rooms/{plain}/tokens", body)
    assert (status, refusal["error"]["code"]) == (422, "broadcast_not_token")

    host = await server.client(room_id, "host", "host", "hunan")
    try:
        playlist = server.app[BROADCASTS].path(room_id) / "index.m3u8"
        await eventually(playlist.is_file, "the playlist is written", 40)
        path = f"/live/{room_id}/index.m3u8"
        assert await _json_error(server, path) == (401, "token_missing")
        assert await _json_error(server, path + "?token=garbage") == (401, "token_invalid")
        assert await _json_error(server, f"{path}?token={member}") == (403, "not_viewer")
        assert await _json_error(server, f"{path}?token={elsewhere}") == (403, "wrong_room")
        forged = {"Cookie": "yitang_live=9999999999.0123456789abcdef0123456789abcdef01234567"}
        assert await _json_error(server, path, headers=forged) == (401, "token_missing")

        # The page with a viewer token sets the cookie; the player needs nothing else.
        # (unsafe: the jar keeps cookies of an IP address such as 127.0.0.1, like a browser)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser_like:
            async with browser_like.get(f"{server.base_url}/live/{room_id}?token={viewer}") as page:
                assert page.status == 200
                cookie = page.cookies["yitang_live"]
                assert cookie["path"] == f"/live/{room_id}"
                assert cookie["httponly"]
            async with browser_like.get(server.base_url + path) as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "private, max-age=1"
                names = _segments(await response.read())
            if names:
                async with browser_like.get(f"{server.base_url}/live/{room_id}/{names[0]}") as seg:
                    assert seg.status == 200
            # The cookie is for this room only.
            async with browser_like.get(f"{server.base_url}/live/{other_id}/index.m3u8") as other:
                assert other.status == 401

            # The session ends: the playlist is closed, the programme says so.
            await host.end_session()

            async def closed() -> bool:
                async with browser_like.get(server.base_url + path) as response:
                    return response.status == 200 and "#EXT-X-ENDLIST" in await response.text()

            await eventually(closed, "the playlist ends with the session", 20)
            async with browser_like.get(f"{server.base_url}/live/{room_id}/programme.json") as p:
                assert (await p.json())["state"] == "ended"
    finally:
        await host.close()


async def test_host_pauses_and_a_dying_worker_is_replaced(server: ServerHandle) -> None:
    room_id = (await server.create_room(broadcast="public"))["id"]
    host = await server.client(room_id, "host", "host", "hunan")
    member = await server.client(room_id, "m1", "member", "zhuzhou")
    service = server.app[BROADCASTS]
    try:
        await eventually(
            (service.path(room_id) / "index.m3u8").is_file, "the playlist is written", 40
        )
        with pytest.raises(SignalingError) as refused:
            await member.call("broadcast_pause")
        assert refused.value.code == "host_only"

        ack = await host.call("broadcast_pause")
        assert ack["live"]["broadcast_paused"] is True

        async def paused(value: bool) -> bool:
            shown = await _programme(server, room_id)
            return shown is not None and shown["paused"] is value

        await eventually(lambda: paused(True), "the programme says paused", 5)
        await host.call("broadcast_resume")
        await eventually(lambda: paused(False), "the programme says live again", 5)

        # The worker dies: another one takes over, with new segment names.
        supervisor = service.broadcasts[room_id].supervisor
        first_pid = supervisor.pid
        assert first_pid is not None
        first_names = set(_segments((await _get(server, f"/live/{room_id}/index.m3u8"))[1]))
        os.kill(first_pid, signal.SIGKILL)
        await eventually(
            lambda: supervisor.pid not in (None, first_pid), "a new worker is started", 10
        )

        async def new_segment() -> bool:
            status, body, _ = await _get(server, f"/live/{room_id}/index.m3u8")
            return status == 200 and bool(set(_segments(body)) - first_names)

        await eventually(new_segment, "the new worker writes segments", 40)

        # Past its restarts, the broadcast is reported failed and the session goes on.
        supervisor.max_restarts = 0
        second_pid = supervisor.pid
        assert second_pid is not None
        os.kill(second_pid, signal.SIGKILL)
        await eventually(lambda: supervisor.failed, "the broadcast is given up", 10)
        owned = server.owned_room(room_id)
        assert owned is not None

        def failure_told() -> bool:
            assert owned is not None
            return any(e.type == "broadcast_failed" for e in owned.state.timeline)

        await eventually(failure_told, "the timeline tells of the failure", 5)
        shown = await _programme(server, room_id)
        assert shown is not None and shown["state"] == "failed"
        live = await host.advance_agenda(1)
        assert live.agenda_index == 1
    finally:
        await member.close()
        await host.close()


async def test_viewer_questions_reach_the_broadcast_only_once_moderated(
    server: ServerHandle,
) -> None:
    room_id = (await server.create_room(broadcast="public"))["id"]
    host = await server.client(room_id, "host", "host", "hunan")
    try:
        await eventually(
            (server.app[BROADCASTS].path(room_id) / "programme.json").is_file,
            "the broadcast is live",
            40,
        )
        url = f"{server.base_url}/live/{room_id}/questions"
        text = "新城的交通怎么规划？"
        async with server.http.post(url, json={"text": text, "district": "石峰区"}) as response:
            assert response.status == 202
            item_id = (await response.json())["id"]
        async with server.http.post(url, json={"text": "x" * 501}) as response:
            assert response.status == 422
        owned = server.owned_room(room_id)
        assert owned is not None
        queued = owned.state.gallery[item_id]
        assert (queued.text, queued.status) == (text, "pending")

        # Not shown before a moderator approves it; on screen once the host shows it.
        await server.app[BROADCASTS].sync()  # a pass of the programme after the post
        shown = await _programme(server, room_id)
        assert shown is not None and shown["gallery"] is None
        await host.call("gallery_show", {"id": item_id})

        async def on_screen() -> bool:
            shown = await _programme(server, room_id)
            return shown is not None and shown["gallery"] == text

        await eventually(on_screen, "the broadcast shows the approved question", 5)

        # The address's budget runs out (3 at once; the 422 counted too).
        statuses = []
        for _ in range(3):
            async with server.http.post(url, json={"text": "再问一个"}) as response:
                statuses.append(response.status)
        assert statuses[-1] == 429
    finally:
        await host.close()
    token_room = (await server.create_room(broadcast="token"))["id"]
    async with server.http.post(
        f"{server.base_url}/live/{token_room}/questions", json={"text": "hi"}
    ) as response:
        assert response.status == 401
