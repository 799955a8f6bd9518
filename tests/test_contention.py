"""Contention and floods inside the limits never fail or starve other people's requests.

The first round's optimistic transactions turned 100 simultaneous hands into a
quarter of `busy` acks, and ten members inside their rate limits into
`internal_error` for everyone. A room now has one owner applying changes in
memory, one at a time, taking turns between identities.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from signaling.client import RoomClient, SignalingError
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, ServerHandle, run_server
from tests.processes import server_process

MEMBERS = 200


async def _members(server: ServerHandle, room_id: str, count: int) -> list[RoomClient]:
    clients: list[RoomClient] = []
    for start in range(0, count, 25):
        batch = [
            server.client(room_id, f"m{i}", "member", "shifeng")
            for i in range(start, min(start + 25, count))
        ]
        clients += await asyncio.gather(*batch)
    return clients


async def test_two_hundred_hands_at_once_are_all_accepted_in_one_queue(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(tmp_path / "data", free_port(), redis_url=redis_url) as server:
        room = await server.create_room()
        host = await server.client(room["id"], "host", "host", "hunan")
        members = await _members(server, room["id"], MEMBERS)
        results = await asyncio.gather(
            *(m.call("raise_hand") for m in members), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], failures[:5]
        expected = {f"m{i}" for i in range(MEMBERS)}
        await host.wait_for(lambda: set(host.live.queue) == expected, timeout=30)
        assert len(host.live.queue) == MEMBERS
        # And all at once the other way: every hand lowered, nobody refused.
        results = await asyncio.gather(
            *(m.call("lower_hand") for m in members), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        await host.wait_for(lambda: host.live.queue == [], timeout=30)
        _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
        assert detail["live"]["queue"] == []
        await asyncio.gather(*(m.close() for m in [host, *members]))


#: Flooders and their pace: 10 members at 15 events/s each, inside the 20/s limit.
FLOODERS = 10
FLOOD_RATE = 15.0
#: The victim's commands measured, before and during the flood.
SAMPLES = 40


async def _victim_latencies(host: RoomClient) -> list[float]:
    latencies = []
    for i in range(SAMPLES):
        started = time.perf_counter()
        await host.set_lock(i % 2 == 0)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)  # the host's own pace: 20 commands a second at most
    return latencies


async def _flood(
    member: RoomClient, stop: asyncio.Event, errors: list[str], acked: list[int]
) -> int:
    sent = 0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        event = "raise_hand" if sent % 2 == 0 else "lower_hand"
        try:
            await member.call(event)
        except SignalingError as exc:
            errors.append(exc.code)
        sent += 1
        acked[0] += 1
        next_at += 1.0 / FLOOD_RATE
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return sent


async def test_a_flood_inside_the_limits_barely_slows_the_host(tmp_path: Path) -> None:
    # The server runs in its own process (its own core), as in production.
    async with server_process(tmp_path / "data", free_port()) as node:
        headers = {"Authorization": f"Bearer {node.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(node.base_url + "/api/rooms", json=ROOM_SPEC) as response:
                room_id = (await response.json())["id"]

            async def client(identity: str, role: str, venue: str) -> RoomClient:
                body = {"identity": identity, "name": identity, "role": role, "venue": venue}
                async with http.post(
                    f"{node.base_url}/api/rooms/{room_id}/tokens", json=body
                ) as response:
                    token = (await response.json())["token"]
                joined = RoomClient(node.base_url, token)
                await joined.connect()
                return joined

            host = await client("host", "host", "hunan")
            flooders = [await client(f"f{i}", "member", "shifeng") for i in range(FLOODERS)]
        baseline = await _victim_latencies(host)
        stop = asyncio.Event()
        errors: list[str] = []
        acked = [0]
        floods = [asyncio.create_task(_flood(m, stop, errors, acked)) for m in flooders]
        # Measure once the flood is under way (every flooder has had acks).
        await host.wait_for(lambda: acked[0] >= FLOODERS * 5, timeout=30)
        during = await _victim_latencies(host)
        stop.set()
        sent = sum(await asyncio.gather(*floods))
        base_p50, flood_p50 = statistics.median(baseline), statistics.median(during)
        print(
            f"host ack p50: {base_p50 * 1000:.1f} ms alone, {flood_p50 * 1000:.1f} ms during "
            f"a flood of {sent} events; flood errors: {sorted(set(errors))}"
        )
        assert errors == [], "events inside the limits are never refused or failed"
        assert sent >= FLOODERS * FLOOD_RATE * 2  # the flood did run alongside
        # Within a small multiple of its own baseline, measured in the same run.
        assert flood_p50 <= 5 * base_p50 + 0.005, (base_p50, flood_p50)
        for client in [host, *flooders]:
            await client.close()
