"""Load tool: chat fan-out latency of the /room protocol, against bare python-socketio.

    python bench/signaling_load.py --clients 10,50,100 --messages 30

For each N, in the same run and measured the same way:

* "yitang": a real `yitang serve` process (embedded Valkey, Redis fan-out,
  validation, rate limits, timeline stream); N participants join one room with
  signaling.client.RoomClient; the host posts chat messages one at a time;
* "bare": a python-socketio server process with no Redis and no validation that
  rebroadcasts each message to N plain Socket.IO clients.

It prints the time from sending a message until all N clients have it (p50,
p95), the server's CPU per message, and the ratio yitang / bare. All traffic is
on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil
import socketio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from signaling.client import RoomClient  # noqa: E402

WAIT = 30.0
ROOM = {
    "id": "load",
    "title": "负载测试",
    "scheduled_start": "2026-12-01T09:00:00+08:00",
    "venues": [
        {"id": "hunan", "name": "主会场", "level": "provincial", "main": True},
        {"id": "shifeng", "name": "区会场", "level": "county"},
    ],
}

BARE_SERVER = """
import socketio, sys
from aiohttp import web
sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)

@sio.event
async def say(sid, data):
    await sio.emit("heard", data)
    return {"ok": True}

web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    child = await asyncio.create_subprocess_exec(
        *args, cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield child
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), timeout=20)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure_yitang(clients: int, messages: int) -> tuple[list[float], float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        async with process(
            sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", data,
            "--workers", "1",  # one node process, as the bare server it is compared with
        ) as server:  # fmt: skip
            await wait_http(base + "/healthz")
            key = (Path(data) / "api-key").read_text().strip()
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                async with http.post(base + "/api/rooms", json=ROOM) as response:
                    assert response.status == 201, await response.text()
                tokens = []
                for index in range(clients + 1):
                    role, venue = ("host", "hunan") if index == 0 else ("member", "shifeng")
                    name = f"p{index}"
                    body = {"identity": name, "name": name, "role": role, "venue": venue}
                    async with http.post(base + "/api/rooms/load/tokens", json=body) as response:
                        tokens.append((await response.json())["token"])
            host, *members = [RoomClient(base, token) for token in tokens]
            for client in (host, *members):
                await client.connect()
            latencies = []
            cpu_before = cpu_seconds(server.pid)
            for index in range(messages):
                started = time.perf_counter()
                entry_id = (await host.chat(f"消息 {index}")).id
                for member in members:
                    await member.wait_for(
                        lambda m=member, i=entry_id: any(e.id == i for e in m.timeline), WAIT
                    )
                latencies.append(time.perf_counter() - started)
                # Chat is limited to 1/s per participant (burst 5): stay under it.
                await asyncio.sleep(1.0)
            cpu = cpu_seconds(server.pid) - cpu_before
            for client in (host, *members):
                await client.close()
    return latencies, cpu / messages


async def measure_bare(clients: int, messages: int) -> tuple[list[float], float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with process(sys.executable, "-c", BARE_SERVER, str(port)) as server:
        await wait_http(base + "/socket.io/?EIO=4&transport=polling")
        received: dict[int, set[int]] = {}
        changed = asyncio.Condition()
        sockets = []
        for index in range(clients + 1):
            client = socketio.AsyncClient()
            seen: set[int] = set()
            received[index] = seen

            async def heard(data: dict[str, int], seen: set[int] = seen) -> None:
                seen.add(data["n"])
                async with changed:
                    changed.notify_all()

            client.on("heard", heard)
            await client.connect(base, transports=["websocket"])
            sockets.append(client)
        latencies = []
        cpu_before = cpu_seconds(server.pid)
        for n in range(messages):
            started = time.perf_counter()
            await sockets[0].call("say", {"n": n})
            async with asyncio.timeout(WAIT), changed:
                await changed.wait_for(
                    lambda n=n: all(n in received[i] for i in range(1, clients + 1))
                )
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(1.0)
        cpu = cpu_seconds(server.pid) - cpu_before
        for client in sockets:
            await client.disconnect()
    return latencies, cpu / messages


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,50,100")
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    header = ("N", "server", "p50 ms", "p95 ms", "CPU ms/msg", "p50 ratio")
    print("{:>4} {:>7} {:>8} {:>8} {:>11} {:>10}".format(*header))
    for clients in (int(n) for n in args.clients.split(",")):
        ours, ours_cpu = await measure_yitang(clients, args.messages)
        bare, bare_cpu = await measure_bare(clients, args.messages)
        ratio = p(ours, 50) / p(bare, 50)
        for name, values, cpu in (("yitang", ours, ours_cpu), ("bare", bare, bare_cpu)):
            print(
                f"{clients:>4} {name:>7} {p(values, 50) * 1000:>8.1f} {p(values, 95) * 1000:>8.1f} "
                f"{cpu * 1000:>11.2f} {ratio if name == 'yitang' else 1.0:>9.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
