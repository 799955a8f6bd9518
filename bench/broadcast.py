"""Benchmark: the live broadcast's CPU in its worker, and the SFU's CPU with and without it.

    python bench/broadcast.py [--publishers 2] [--subscribers 2] [--seconds 10] [--rounds 2]

One real server process (``python -m server serve``, embedded Valkey, all on
127.0.0.1) and, in this process, aiortc participants sending pre-encoded
640x480 25 fps VP8 + Opus clips (``server.loadtest``: no encoding here) and
receiving without decoding. Each round runs the same session twice, one after
the other: in a room with ``broadcast: off``, then in a room with ``broadcast:
public`` (its worker composes 1280x720 at 25 fps, H.264 + AAC, HLS). Measured in
each window: the server process's CPU (user + system, its own, not its
children's) and the broadcast worker's CPU, as % of one core. Each session gets
a fresh server process, so one session's leftovers never weigh on the next.

Reported: the worker's CPU per broadcast session (target: at most one core),
and the server's CPU with the broadcast divided by without it (target: about
1; the broadcast adds one socket send per packet of the tracks it shows).
Every loop and wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.loadtest.clip import encode_audio, encode_video
from server.loadtest.participant import LoadParticipant

REPO = Path(__file__).resolve().parents[1]
ROOM = {
    "title": "Broadcast benchmark",
    "scheduled_start": "2026-12-01T09:00:00+08:00",
    "venues": [
        {"id": "main", "name": "Main venue", "level": "provincial", "main": True},
        {"id": "city", "name": "City venue", "level": "city"},
    ],
    "agenda": [{"title": "Opening"}],
}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _worker(server: psutil.Process) -> psutil.Process | None:
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "server.broadcast.worker" in " ".join(child.cmdline()):
                return child
    return None


def _video_frames(people: list[LoadParticipant]) -> int:
    return sum(t.frames for p in people for t in p.tracks if t.kind == "video")


async def _session(
    http: aiohttp.ClientSession,
    base_url: str,
    api_key: str,
    server: psutil.Process,
    *,
    broadcast: str,
    publishers: int,
    subscribers: int,
    seconds: float,
    clips: tuple[Any, Any],
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with http.post(
        f"{base_url}/api/rooms", json={**ROOM, "broadcast": broadcast}, headers=headers
    ) as response:
        room = await response.json()
    people: list[LoadParticipant] = []
    for index in range(publishers + subscribers):
        role = "host" if index == 0 else ("member" if index < publishers else "observer")
        body = {
            "identity": f"p{index}",
            "name": f"P{index}",
            "role": role,
            "venue": "main" if index == 0 else "city",
        }
        async with http.post(
            f"{base_url}/api/rooms/{room['id']}/tokens", json=body, headers=headers
        ) as response:
            token = (await response.json())["token"]
        publishing = index < publishers
        person = LoadParticipant(
            base_url,
            token,
            video=clips[0] if publishing else None,
            audio=clips[1] if publishing else None,
            codec="vp8",
            ice_addresses=("127.0.0.1",),
        )
        await person.join()
        people.append(person)
    try:
        worker = None
        if broadcast != "off":
            playlist = f"{base_url}/live/{room['id']}/index.m3u8"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with http.get(playlist) as response:
                    if response.status == 200 and ".ts" in await response.text():
                        break
                await asyncio.sleep(0.5)
            worker = _worker(server)
            assert worker is not None, "no broadcast worker"
        # Measure only once video flows to every receiver (connections up, keyframes through).
        expected_tracks = publishers * (publishers - 1) + subscribers * publishers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tracks = [t for p in people for t in p.tracks if t.kind == "video"]
            before = [t.frames for t in tracks]
            await asyncio.sleep(1)
            moving = sum(t.frames > b for t, b in zip(tracks, before, strict=True))
            if moving >= expected_tracks:
                break
        else:
            raise RuntimeError("video did not flow within 60 s")
        frames_before = _video_frames(people)
        server_before = _cpu(server)
        worker_before = _cpu(worker) if worker else 0.0
        started = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - started
        result = {"server": 100 * (_cpu(server) - server_before) / wall}
        received = (_video_frames(people) - frames_before) / wall
        result["video frames received per s"] = received
        if received < 0.8 * 25 * expected_tracks:
            # The machine (shared) did not keep up: the window would compare unlike loads.
            raise RuntimeError(f"only {received:.0f} of {25 * expected_tracks} video frames/s")
        # Proof that media flowed: video frames counted by the receivers in the window.
        if worker is not None:
            result["worker"] = 100 * (_cpu(worker) - worker_before) / wall
        return result
    finally:
        for person in people:
            await person.close()
        async with http.delete(f"{base_url}/api/rooms/{room['id']}", headers=headers):
            pass


async def _with_server(
    mode: str, args: argparse.Namespace, clips: tuple[Any, Any]
) -> dict[str, float]:
    """One session in a fresh server process."""
    with tempfile.TemporaryDirectory(prefix="yitang-bench-broadcast-") as temporary:
        data = Path(temporary)
        port = 18000 + os.getpid() % 2000
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve",
            "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
            "--ice-address", "127.0.0.1", "--ice-remote-allow", "127.0.0.0/8",
            "--render-workers", "0", "--workers", "1",
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(base_url + "/readyz") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.2)
                api_key = (data / "api-key").read_text().strip()
                # With --workers 1 the node (the SFU) is the `serve` process itself.
                server = psutil.Process(process.pid)
                return await _session(
                    http, base_url, api_key, server,
                    broadcast=mode, publishers=args.publishers,
                    subscribers=args.subscribers, seconds=args.seconds, clips=clips,
                )  # fmt: skip
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def main_async(args: argparse.Namespace) -> None:
    clips = (encode_video("vp8", 640, 480, 25, 800_000), encode_audio())
    without: list[float] = []
    with_broadcast: list[float] = []
    worker: list[float] = []
    for round_index in range(args.rounds):
        for mode in args.order.split(","):
            try:
                result = await _with_server(mode, args, clips)
            except RuntimeError as exc:  # a session whose media never flowed is left out
                print(f"round {round_index + 1} broadcast={mode}: left out ({exc})")
                continue
            print(f"round {round_index + 1} broadcast={mode}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in result.items()
            ))  # fmt: skip
            if mode == "off":
                without.append(result["server"])
            else:
                with_broadcast.append(result["server"])
                worker.append(result["worker"])
    if not without or not with_broadcast:
        print("no pair of sessions to compare (see above)")
        return
    base = statistics.median(without)
    print()
    window = f"{args.rounds} rounds of {args.seconds:.0f} s"
    print(f"publishers {args.publishers} (640x480 25 fps VP8 + Opus), "
          f"subscribers {args.subscribers}, {window}")  # fmt: skip
    print(f"broadcast worker (1280x720 25 fps H.264 + AAC): "
          f"{statistics.median(worker):.0f}% of one core per session "
          f"({statistics.median(worker) / 100:.2f} cores; target <= 1)")  # fmt: skip
    print(f"SFU process: {base:.1f}% without the broadcast, "
          f"{statistics.median(with_broadcast):.1f}% with it: ratio "
          f"{statistics.median(with_broadcast) / base:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--order", default="off,public", help="the sessions of a round (off, public)"
    )
    args = parser.parse_args()
    if not 1 <= args.publishers <= 8 or not 0 <= args.subscribers <= 16 or args.rounds < 1:
        parser.error("publishers 1-8, subscribers 0-16, rounds >= 1")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
