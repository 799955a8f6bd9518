"""Recording driven from the session: the host's events, the indicator everyone sees, automatic
recording, ending the session, and a failing archive that leaves the session running."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from server import appkeys
from server.recording import RecordingConfig
from signaling.client import SignalingError
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server
from tests.session_peer import SessionPeer


async def _peer(
    server: ServerHandle, room_id: str, identity: str, role: str, venue: str, index: int
) -> SessionPeer:
    peer = SessionPeer(server.base_url, await server.token(room_id, identity, role, venue), index)
    await peer.join()
    await peer.publish()
    return peer


def _recording_server(
    tmp_path: Path, redis_url: str, directory: Path | None = None
) -> AbstractAsyncContextManager[ServerHandle]:
    config = RecordingConfig(recordings_dir=directory or tmp_path / "archive", auto_render=False)
    return run_server(tmp_path / "data", free_port(), redis_url, recording_config=config)


async def test_host_records_and_everyone_sees_the_indicator(
    redis_url: str, redis_client: Redis, tmp_path: Path
) -> None:
    async with _recording_server(tmp_path, redis_url) as server:
        room = await server.create_room()
        host = await _peer(server, room["id"], "host", "host", "hunan", 1)
        member = await _peer(server, room["id"], "m1", "member", "shifeng", 2)
        try:
            with pytest.raises(SignalingError) as refused:
                await member.signaling.call("start_recording")
            assert refused.value.code == "host_only"
            ack = await host.signaling.call("start_recording")
            recording_id = ack["recording"]["id"]
            await member.wait_for(lambda: member.signaling.live.recording)
            await member.wait_for(
                lambda: any(e.type == "recording_started" for e in member.signaling.timeline)
            )
            await member.wait_for(lambda: host.frames_from("m1", "video") >= 30)
            ack = await host.signaling.call("stop_recording")
            assert ack["recording"]["state"] == "stopped"
            await member.wait_for(lambda: not member.signaling.live.recording)
            stopped = next(e for e in host.signaling.timeline if e.type == "recording_stopped")
            assert stopped.data["recording_id"] == recording_id
            detail = await server.app[appkeys.RECORDING_SERVICE].detail(recording_id)
            files = detail.manifest.files if detail.manifest else []
            assert {(f.participant, f.kind) for f in files} >= {
                ("host", "video"),
                ("m1", "video"),
                ("m1", "audio"),
            }
        finally:
            await member.close()
            await host.close()


async def test_auto_record_starts_with_the_session_and_end_stops_it(
    redis_url: str, redis_client: Redis, tmp_path: Path
) -> None:
    async with _recording_server(tmp_path, redis_url) as server:
        room = await server.create_room(auto_record=True)
        host = await _peer(server, room["id"], "host", "host", "hunan", 1)
        try:
            await host.wait_for(lambda: host.signaling.live.recording)
            started = next(e for e in host.signaling.timeline if e.type == "recording_started")
            assert started.data["by"] == "auto"
            await host.signaling.end_session()
            recorder = server.app[appkeys.RECORDING_SERVICE]
            assert not recorder.is_recording(room["id"])
            detail = await recorder.detail(started.data["recording_id"])
            assert detail.summary.state == "stopped"
        finally:
            await host.close()


async def test_unwritable_archive_tells_the_host_and_the_session_goes_on(
    redis_url: str, redis_client: Redis, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")
    async with _recording_server(tmp_path, redis_url, not_a_folder) as server:
        room = await server.create_room()
        host = await _peer(server, room["id"], "host", "host", "hunan", 1)
        member = await _peer(server, room["id"], "m1", "member", "shifeng", 2)
        try:
            with pytest.raises(SignalingError) as refused:
                await host.signaling.call("start_recording")
            assert refused.value.code == "archive_unwritable"
            await host.wait_for(
                lambda: any(n == "recording_error" for n, _ in host.signaling.received)
            )
            assert not host.signaling.live.recording
            before = host.frames_from("m1", "video")
            await host.wait_for(lambda: host.frames_from("m1", "video") > before + 10)
        finally:
            await member.close()
            await host.close()
