"""Benchmark: the forwarding SFU (server.media) against a naive aiortc MediaRelay server.

    python bench/forwarding.py --n 1,2,4,8,16 --seconds 10

For each N and each server ("forward" = MediaRoom, "relay" = bench/relay_server.py),
in separate processes, all on 127.0.0.1:

* one server process;
* one publisher process sending 640x480 VP8 (noisy frames, so the encoder runs at
  its target bitrate) and Opus;
* N subscriber processes that count what they receive without decoding it
  (see bench_client.py: frames = RTP packets with the marker bit);
* after the measurement window, one late joiner that decodes video, to time
  its first decoded frame from its connection being up.

Measured over the window (after a warm-up): server CPU (user+system of the
server process, in % of one core), video frames/s and audio packets/s per
subscriber, the share of the publisher's frames each subscriber received, and
the late joiner's time to first frame. Every loop and wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import PipeReader, ask, run_client, wait_until
from relay_server import MediaRelayServer

from server.media import (
    IceAddress,
    MediaConfig,
    MediaEvent,
    MediaNode,
    SubscriberOffer,
)

WARMUP = 3.0
SETUP_TIMEOUT = 60.0
LATE_TIMEOUT = 15.0


# --- Server process ---------------------------------------------------------------------


async def _server_main(mode: str, conns: list[Connection], control: Connection) -> None:
    import ipaddress

    stop = asyncio.Event()
    locks: dict[str, asyncio.Lock] = {}
    tasks: set[asyncio.Task[None]] = set()
    conn_by_pid = {f"c{i}": conn for i, conn in enumerate(conns)}

    def on_event(event: MediaEvent) -> None:
        if isinstance(event, SubscriberOffer):
            conn_by_pid[event.participant_id].send({"type": "offer", "sdp": event.sdp})

    node = MediaNode(
        MediaConfig(
            ice_addresses=[IceAddress("127.0.0.1")],
            ice_remote_allow=[ipaddress.ip_network("127.0.0.0/8")],
        )
    )
    room = node.room("bench", on_event=on_event)
    relay = MediaRelayServer()

    async def handle(pid: str, message: dict[str, Any]) -> None:
        async with locks.setdefault(pid, asyncio.Lock()):
            conn = conn_by_pid[pid]
            kind = message["type"]
            if mode == "forward":
                if kind == "join":
                    await room.add_participant(pid, can_publish=message["role"] == "publisher")
                elif kind == "offer":
                    conn.send({"type": "answer", "sdp": await room.publish(pid, message["sdp"])})
                elif kind == "answer":
                    await room.subscriber_answer(pid, message["sdp"])
            else:
                if kind == "join" and message["role"] != "publisher":
                    conn.send({"type": "offer", "sdp": await relay.subscriber_offer(pid)})
                elif kind == "offer":
                    answer = await relay.on_publish_offer(pid, message["sdp"])
                    conn.send({"type": "answer", "sdp": answer})
                elif kind == "answer":
                    await relay.on_subscriber_answer(pid, message["sdp"])

    def dispatcher(pid: str) -> Any:
        def on_message(message: dict[str, Any]) -> None:
            task = asyncio.ensure_future(handle(pid, message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_message

    readers = [PipeReader(conn, dispatcher(pid)) for pid, conn in conn_by_pid.items()]

    def on_control(message: dict[str, Any]) -> None:
        if message["cmd"] == "stats":
            stats = room.stats()
            control.send({"plis": stats.plis_sent, "dropped": stats.packets_dropped})
        elif message["cmd"] == "stop":
            stop.set()

    control_reader = PipeReader(control, on_control)
    await stop.wait()
    for reader in (*readers, control_reader):
        reader.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await node.close()
    await relay.close()
    control.send({"stopped": True})


def run_server(mode: str, conns: list[Connection], control: Connection) -> None:
    """Server process entry point (BENCH_PROFILE=file writes a cProfile of the server)."""
    profile_path = os.environ.get("BENCH_PROFILE")
    if not profile_path:
        asyncio.run(_server_main(mode, conns, control))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_server_main(mode, conns, control))
    finally:
        profiler.disable()
        profiler.dump_stats(f"{profile_path}.{mode}")


# --- Orchestrator -------------------------------------------------------------------------


@dataclass
class Result:
    """One benchmark run."""

    mode: str
    n: int
    cpu_percent: float
    video_fps: float
    video_pps: float
    audio_pps: float
    min_received_percent: float
    publisher_fps: float
    late_first_frame_ms: float | None


def run_once(mode: str, n: int, seconds: float) -> Result:
    """Run one server mode with N subscribers; return the measurements."""
    ctx = multiprocessing.get_context("spawn")
    links = [ctx.Pipe() for _ in range(n + 2)]  # publisher, N subscribers, late joiner
    server_control, server_control_child = ctx.Pipe()
    server = ctx.Process(
        target=run_server, args=(mode, [a for a, _ in links], server_control_child), daemon=True
    )
    server.start()
    clients: list[tuple[Any, Connection]] = []

    def start_client(index: int, role: str) -> Connection:
        control, child = ctx.Pipe()
        process = ctx.Process(target=run_client, args=(links[index][1], child, role), daemon=True)
        process.start()
        clients.append((process, control))
        return control

    try:
        publisher = start_client(0, "publisher")
        subscribers = [start_client(i + 1, "subscriber") for i in range(n)]
        wait_until(
            lambda: all(ask(s, {"cmd": "counts"})["has_video"] for s in subscribers),
            SETUP_TIMEOUT,
            "every subscriber to receive video",
        )
        time.sleep(WARMUP)  # encoder bitrate ramp-up (REMB) before measuring

        server_process = psutil.Process(server.pid)
        cpu0 = sum(server_process.cpu_times()[:2])
        t0 = time.monotonic()
        pub0 = ask(publisher, {"cmd": "counts"})
        sub0 = [ask(s, {"cmd": "counts"}) for s in subscribers]
        time.sleep(seconds)  # the measurement window
        cpu1 = sum(server_process.cpu_times()[:2])
        t1 = time.monotonic()
        pub1 = ask(publisher, {"cmd": "counts"})
        sub1 = [ask(s, {"cmd": "counts"}) for s in subscribers]

        elapsed = t1 - t0
        sent = pub1["frames_sent"] - pub0["frames_sent"]
        pairs = list(zip(sub0, sub1, strict=True))
        fps = [(b["video_frames"] - a["video_frames"]) / elapsed for a, b in pairs]
        vpps = [(b["video_packets"] - a["video_packets"]) / elapsed for a, b in pairs]
        pps = [(b["audio_packets"] - a["audio_packets"]) / elapsed for a, b in pairs]
        received = [
            100.0 * (b["video_frames"] - a["video_frames"]) / max(sent, 1)
            for a, b in zip(sub0, sub1, strict=True)
        ]

        late = start_client(n + 1, "late")
        late_ms: float | None = None
        try:
            wait_until(
                lambda: ask(late, {"cmd": "counts"})["first_decoded_at"] is not None,
                LATE_TIMEOUT,
                "the late joiner's first decoded frame",
            )
            counts = ask(late, {"cmd": "counts"})
            late_ms = 1000.0 * (counts["first_decoded_at"] - counts["connected_at"])
        except TimeoutError:
            pass
        return Result(
            mode=mode,
            n=n,
            cpu_percent=100.0 * (cpu1 - cpu0) / elapsed,
            video_fps=statistics.mean(fps),
            video_pps=statistics.mean(vpps),
            audio_pps=statistics.mean(pps),
            min_received_percent=min(received),
            publisher_fps=sent / elapsed,
            late_first_frame_ms=late_ms,
        )
    finally:
        for _, control in clients:
            with contextlib.suppress(OSError):
                control.send({"cmd": "stop"})
        for process, _ in clients:
            process.join(10)
            if process.is_alive():
                process.terminate()
        with contextlib.suppress(OSError):
            server_control.send({"cmd": "stop"})
        server.join(10)
        if server.is_alive():
            server.terminate()


def main() -> None:
    """Parse arguments, run both servers for each N, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="1,2,4,8,16", help="comma-separated subscriber counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--modes", default="forward,relay", help="forward,relay")
    args = parser.parse_args()
    counts = [int(x) for x in args.n.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    if not counts or any(c < 1 or c > 32 for c in counts) or not 0 < args.seconds <= 300:
        parser.error("N must be 1..32 and seconds 0..300")

    results: dict[tuple[str, int], Result] = {}
    for n in counts:
        for mode in modes:
            print(f"running {mode} N={n} ...", file=sys.stderr, flush=True)
            results[(mode, n)] = run_once(mode, n, args.seconds)

    header = (
        f"{'server':8} {'N':>3} {'CPU %':>7} {'%/stream':>9} {'fps/sub':>8} {'video pps':>10}"
        f" {'audio pps':>10}"
        f" {'min recv %':>11} {'pub fps':>8} {'late ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for (mode, n), r in results.items():
        late = f"{r.late_first_frame_ms:.0f}" if r.late_first_frame_ms is not None else "n/a"
        print(
            f"{mode:8} {n:>3} {r.cpu_percent:>7.1f} {r.cpu_percent / n:>9.2f} {r.video_fps:>8.1f}"
            f" {r.video_pps:>10.1f}"
            f" {r.audio_pps:>10.1f} {r.min_received_percent:>11.1f} {r.publisher_fps:>8.1f}"
            f" {late:>8}"
        )
    if "forward" in modes and "relay" in modes:
        print()
        for n in counts:
            ours, relay = results[("forward", n)], results[("relay", n)]
            ratio = relay.cpu_percent / max(ours.cpu_percent, 1e-9)
            print(f"N={n:>2}: CPU ratio MediaRelay / forwarding = {ratio:.1f}x")


if __name__ == "__main__":
    main()
