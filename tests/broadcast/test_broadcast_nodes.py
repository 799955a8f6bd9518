"""Every node serves a room's live broadcast, whichever node's worker writes it.

A viewer's requests land on any node (one node process per core on a box, a
load balancer in front of several boxes). Two node processes sharing a data
directory: the other node reads the owner's files itself; two nodes with data
directories of their own: it relays to the owner. Either way the viewer gets
the same bytes, the same access rules, and their questions reach the host.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.credentials import API_KEY_FILE, TOKEN_SECRET_FILE
from signaling.client import RoomClient
from tests.cluster_kit import Cluster, cluster
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, eventually
from tests.processes import ServerProcess, server_process, valkey_server
from tests.test_workers import box


def _segments(playlist: bytes) -> list[str]:
    return [line for line in playlist.decode().splitlines() if line.endswith(".ts")]


async def _get(
    http: aiohttp.ClientSession, node: ServerProcess, path: str, **kwargs: Any
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with http.get(node.base_url + path, **kwargs) as response:
        return response.status, await response.read(), response


async def _owner_and_other(
    deployment: Cluster, host: RoomClient
) -> tuple[ServerProcess, ServerProcess]:
    assert host.owner is not None
    owner_url = host.owner.url.rstrip("/")
    owners = [n for n in deployment.nodes if n.base_url == owner_url]
    assert len(owners) == 1, (owner_url, [n.base_url for n in deployment.nodes])
    other = next(n for n in deployment.nodes if n is not owners[0])
    return owners[0], other


async def _serves_token_broadcast(deployment: Cluster, *, relayed: bool) -> None:
    """A token broadcast owned by one node, watched and asked through the other."""
    room_id = await deployment.create_room(broadcast="token")
    host = await deployment.client(deployment.nodes[0], room_id, "host", "host", "hunan")
    viewer_token = await deployment.token(room_id, "viewer-1", "viewer", "hunan")
    owner, other = await _owner_and_other(deployment, host)
    # One cookie jar per node: the cookie the other node sets must be its own doing.
    async with (
        aiohttp.ClientSession() as at_owner,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer,
    ):
        playlist_path = f"/live/{room_id}/index.m3u8"
        token = {"token": viewer_token}

        async def owner_lists_a_segment() -> bool:
            status, body, _ = await _get(at_owner, owner, playlist_path, params=token)
            return status == 200 and bool(_segments(body))

        await eventually(owner_lists_a_segment, "the owner's playlist lists a segment", 60)

        # No token, no cookie: refused on the other node as on the owner.
        status, _, _ = await _get(viewer, other, playlist_path)
        assert status == 401
        # The viewer link on the other node: the playlist, and the cookie for the rest.
        status, body, response = await _get(viewer, other, playlist_path, params=token)
        assert status == 200, body
        assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert response.headers["Cache-Control"] == "private, max-age=1"
        assert "yitang_live" in response.cookies
        # Relayed answers say so (Via); read from the shared disk, they are the node's own.
        assert ("Via" in response.headers) is relayed
        name = _segments(body)[-1]
        status, data, response = await _get(viewer, other, f"/live/{room_id}/{name}")
        assert status == 200
        assert response.headers["Content-Type"] == "video/mp2t"
        assert "immutable" in response.headers["Cache-Control"]
        assert ("Via" in response.headers) is relayed
        status, original, _ = await _get(at_owner, owner, f"/live/{room_id}/{name}", params=token)
        assert status == 200 and data == original and data[:1] == b"\x47"  # MPEG-TS sync byte

        async def same_programme() -> bool:
            here = await _get(viewer, other, f"/live/{room_id}/programme.json")
            there = await _get(at_owner, owner, f"/live/{room_id}/programme.json", params=token)
            return here[0] == there[0] == 200 and here[1] == there[1]

        await eventually(same_programme, "the other node serves the owner's programme.json", 10)
        # Only the broadcast's own names: nothing else of the owner's directory.
        status, _, _ = await _get(viewer, other, f"/live/{room_id}/.origin")
        assert status == 404
        status, _, _ = await _get(viewer, other, f"/live/{room_id}/..%2F..%2Fapi-key")
        assert status == 404

        # A question through the other node reaches the host's moderation queue.
        text = "新城的交通怎么规划？" if not relayed else "老城区停车难怎么办？"
        async with viewer.post(
            f"{other.base_url}/live/{room_id}/questions", json={"text": text, "name": "王观众"}
        ) as response:
            assert response.status == 202, await response.text()
            item_id = (await response.json())["id"]
        await host.wait_for(lambda: item_id in host.gallery_queue, timeout=10)
        queued = host.gallery_queue[item_id]
        assert (queued.text, queued.status, queued.by) == (text, "pending", "viewer-1")

        # So does a request to speak (连线申请); the viewer follows it through the other
        # node, and the credential that node signs takes the seat the owner keeps.
        call_ins = f"{other.base_url}/live/{room_id}/call-ins"
        async with viewer.post(call_ins, json={"name": "王观众"}) as response:
            assert response.status == 202, await response.text()
            asked = await response.json()
        await host.wait_for(lambda: asked["id"] in host.call_ins, timeout=10)
        await host.call("call_in_invite", {"id": asked["id"]})
        handle = {"handle": asked["handle"]}
        async with viewer.post(f"{call_ins}/status", json=handle) as response:
            assert (await response.json())["status"] == "invited"
        async with viewer.post(f"{call_ins}/accept", json=handle) as response:
            assert response.status == 200, await response.text()
            accepted = await response.json()
        guest = RoomClient(other.base_url, accepted["token"])
        try:
            await guest.connect()
            ack = await guest.call("stage_accept")
            assert ack["participant"]["role"] == "guest"
            await host.wait_for(lambda: host.call_ins[asked["id"]].status == "on_stage", timeout=10)
        finally:
            await guest.close()
    await host.close()


@pytest.mark.timeout(180)
async def test_a_node_sharing_the_data_directory_serves_the_owners_broadcast(
    tmp_path: Path,
) -> None:
    # Left behind by a node process that was killed: removed by the next one to start.
    left = tmp_path / "data" / "broadcast" / "node-0123456789ab" / "room-gone"
    left.mkdir(parents=True)
    (left / "index.m3u8").write_text("#EXTM3U\n")
    async with cluster(tmp_path, 2) as deployment:
        await eventually(lambda: not left.parent.exists(), "a dead node's files are removed")
        await _serves_token_broadcast(deployment, relayed=False)
        # Each node writes under a directory of its own.
        assert len(list((tmp_path / "data" / "broadcast").iterdir())) == 2


@contextlib.asynccontextmanager
async def _separate_disks(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Two nodes on one Valkey with data directories of their own (two boxes): the same
    credentials (copied, as a deployment shares them), not the same broadcast files."""
    async with valkey_server() as valkey, contextlib.AsyncExitStack() as stack:
        first_dir, second_dir = tmp_path / "box-a", tmp_path / "box-b"
        first = await stack.enter_async_context(
            server_process(first_dir, free_port(), "--redis-url", valkey.url)
        )
        second_dir.mkdir()
        for name in (API_KEY_FILE, TOKEN_SECRET_FILE):
            shutil.copy(first_dir / name, second_dir / name)
        second = await stack.enter_async_context(
            server_process(second_dir, free_port(), "--redis-url", valkey.url)
        )
        deployment = Cluster(valkey, [first, second])
        await deployment.wait_until_acquainted()
        yield deployment


@pytest.mark.timeout(180)
async def test_a_node_on_another_disk_relays_the_owners_broadcast(tmp_path: Path) -> None:
    async with _separate_disks(tmp_path) as deployment:
        await _serves_token_broadcast(deployment, relayed=True)


@pytest.mark.timeout(180)
async def test_every_request_to_a_box_with_two_node_processes_is_served(tmp_path: Path) -> None:
    async with box(tmp_path) as server:
        status, room = await server.request(
            "POST", "/api/rooms", {**ROOM_SPEC, "broadcast": "public"}
        )
        assert status == 201, room
        room_id = room["id"]
        host = await server.client(room_id, "host", "host", "hunan")
        live = f"{server.base_url}/live/{room_id}"

        async def fresh(address: str = "127.0.0.1") -> aiohttp.ClientSession:
            # A new connection each time: the kernel spreads connections over the processes.
            connector = aiohttp.TCPConnector(force_close=True, local_addr=(address, 0))
            return aiohttp.ClientSession(connector=connector)

        async def get_playlist() -> int:
            async with await fresh() as http, http.get(f"{live}/index.m3u8") as response:
                await response.read()
                return response.status

        async def one_served() -> bool:
            return await get_playlist() == 200

        try:
            await eventually(one_served, "the playlist is served", 60)
            statuses = [await get_playlist() for _ in range(12)]
            assert statuses == [200] * 12
            # Viewers at eight addresses ask (each address has its own edge limit): every
            # question is taken, whichever process the viewer's connection reached.
            posted = []
            for viewer in range(2, 10):
                async with (
                    await fresh(f"127.0.0.{viewer}") as http,
                    http.post(f"{live}/questions", json={"text": f"问题{viewer}"}) as response,
                ):
                    assert response.status == 202, await response.text()
                    posted.append((await response.json())["id"])
            await host.wait_for(lambda: set(posted) <= set(host.gallery_queue), timeout=10)
        finally:
            await host.close()
