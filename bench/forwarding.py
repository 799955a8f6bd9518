"""Benchmark: Yitang's forwarding SFU against Janus VideoRoom (and aiortc's MediaRelay).

    python bench/forwarding.py --n 0,1,2,4,8,16 --seconds 10
    python bench/forwarding.py --modes yitang --n 4 --profile /tmp/prof   # py-spy profile

Servers ("modes"):

* ``yitang``: server.media's MediaRoom (the production forwarding path, with the
  compiled fan-out, server/media/_fanout.c, the compiled ingest,
  server/media/_ingest.c, and the own outbound SRTP, server/media/_outbound_srtp.c;
  the run fails if one is not built);
* ``yitang-libsrtp``: the same with libsrtp protecting every copy instead of the
  server's own AES-GCM (``YITANG_OUTBOUND_SRTP=libsrtp``; server/media/outbound_srtp.py),
  for the before/after in one run;
* ``yitang-no-gso``: the same with each copy sent as it is made, not queued for UDP GSO
  sends at the end of the socket's read (``YITANG_GSO=off``; server/media/fanout.py),
  for the before/after in one run;
* ``yitang-python``: the same with the compiled fan-out off (``YITANG_FANOUT=python``:
  the pure-Python reference path), for the before/after in one run;
* ``yitang-aiortc-ingest``: compiled fan-out, but publishers' RTP received through
  aiortc's own receive task (``YITANG_INGEST=aiortc``) instead of the direct ingest
  (server/media/ingest.py), for the before/after of receiving in one run;
* ``yitang-python-ingest``: compiled fan-out, the direct ingest all in Python
  (``YITANG_INGEST=python``: the compiled ingest off);
* ``janus-one-loop`` / ``janus-stock``: Janus 1.1.2 VideoRoom from Debian
  (``scripts/ensure-janus``; see janus_server.py), with one event loop for all
  handles, or Janus's default of one loop thread per handle;
* ``relay``: a naive aiortc MediaRelay server (decode once, encode per subscriber).

For each N and each server, in separate processes, all on 127.0.0.1, the same
client processes:

* one server process, pinned to CPU 0 (the clients may run on any CPU);
* one publisher process sending 640x480 VP8 (noisy frames, so the encoder runs at
  its target bitrate) and Opus;
* N subscriber processes that count what they receive without decoding it
  (see bench_client.py: frames = RTP packets with the marker bit);
* after the measurement window, one late joiner that decodes video, to time
  its first decoded frame from its connection being up.

Measured over the window (after a warm-up): server CPU (user+system of the
server process, in % of one core), the packets the subscribers received (the
forwarded packets), video frames/s and audio packets/s per subscriber, the
share of the publisher's frames each subscriber received, the times a second
the server's event loop returned to Python from its wait ("loop/s": with the
wait that reads publishers' sockets in C, server/media/event_loop.py, a packet
does not need one), and the late joiner's time to first frame. From the runs
at several N, per server: the CPU cost of one forwarded packet (the least-squares
slope of server CPU time over forwarded packets, so the cost of receiving the
publisher, the intercept, is left out), the % of a core each added subscriber
costs (slope over N), and the ratio of Yitang's cost per forwarded packet to
Janus one-loop's. Every loop and wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import PipeReader, ask, run_client, wait_until
from janus_server import JanusProcess, ensure_janus, run_janus_proxy
from relay_server import MediaRelayServer

from server.media import (
    IceAddress,
    MediaConfig,
    MediaEvent,
    MediaNode,
    SubscriberOffer,
)

WARMUP = 3.0
SETUP_TIMEOUT = 120.0
LATE_TIMEOUT = 15.0


# --- Server process ---------------------------------------------------------------------


async def _server_main(mode: str, conns: list[Connection], control: Connection) -> None:
    import ipaddress

    from server.media import fanout, ingest, outbound_srtp
    from server.media.event_loop import MediaEventLoop

    compiled = mode in (
        "yitang",
        "yitang-libsrtp",
        "yitang-no-gso",
        "yitang-aiortc-ingest",
        "yitang-python-ingest",
    )
    if compiled and not fanout.available():
        raise RuntimeError(f"the compiled fan-out is not built: {fanout.IMPORT_ERROR}")
    if mode in ("yitang", "yitang-libsrtp", "yitang-no-gso") and not ingest.compiled_available():
        raise RuntimeError("the compiled ingest (server/media/_ingest.c) is not built")
    if mode == "yitang" and not outbound_srtp.available():
        raise RuntimeError(f"the outbound SRTP is not built: {outbound_srtp.IMPORT_ERROR}")
    fanout.enabled = compiled
    ingest.enabled = mode != "yitang-aiortc-ingest"
    ingest.compiled = mode in ("yitang", "yitang-libsrtp", "yitang-no-gso")
    outbound_srtp.enabled = mode != "yitang-libsrtp"
    if compiled:
        fanout.set_gso(mode != "yitang-no-gso")
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
            if mode.startswith("yitang"):
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
            loop = asyncio.get_running_loop()
            turns = loop.media_selector.selects if isinstance(loop, MediaEventLoop) else None
            control.send(
                {"plis": stats.plis_sent, "dropped": stats.packets_dropped, "loop_turns": turns}
            )
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
    """Server process entry point (a Yitang mode or "relay"): Yitang on the loop its
    server runs (server/media/event_loop.py), the relay on asyncio's."""
    from server.media import event_loop

    factory = event_loop.new_event_loop if mode in YITANG_MODES else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_server_main(mode, conns, control))


# --- Orchestrator -------------------------------------------------------------------------

SERVER_CPU = 0
YITANG_MODES = (
    "yitang",
    "yitang-libsrtp",
    "yitang-no-gso",
    "yitang-python",
    "yitang-aiortc-ingest",
    "yitang-python-ingest",
)
MODES = (*YITANG_MODES, "janus-one-loop", "janus-stock", "relay")


@dataclass
class Result:
    """One benchmark run."""

    mode: str
    n: int
    cpu_percent: float
    cpu_seconds: float
    user_seconds: float
    forwarded_packets: int
    repeated_packets: int
    video_fps: float
    video_pps: float
    audio_pps: float
    min_received_percent: float
    publisher_fps: float
    late_first_frame_ms: float | None
    #: Times a second the server's event loop returned to Python from its wait (its
    #: MediaSelector's selects; None where the loop is not a MediaEventLoop).
    loop_turns_per_second: float | None = None


def _pin(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(psutil.Error, OSError):
        psutil.Process(pid).cpu_affinity(sorted(cpus))


def _start_server(ctx: Any, mode: str, conns: list[Connection], control: Connection) -> Any:
    """The server process (for Janus: the pipe proxy; Janus itself is started by run_once)."""
    if mode in (*YITANG_MODES, "relay"):
        return ctx.Process(target=run_server, args=(mode, conns, control), daemon=True)
    raise AssertionError(mode)


def run_once(
    mode: str, n: int, seconds: float, *, shim: Path | None, profile_dir: Path | None
) -> Result:
    """Run one server mode with N subscribers; return the measurements."""
    ctx = multiprocessing.get_context("spawn")
    all_cpus = set(range(os.cpu_count() or 1))
    # The clients may use every CPU: on a 2-core machine one core is not enough for
    # 16 aiortc subscribers plus the publisher, and the server's CPU time per packet
    # is what is measured (the server itself stays on SERVER_CPU).
    client_cpus = all_cpus
    links = [ctx.Pipe() for _ in range(n + 2)]  # publisher, N subscribers, late joiner
    server_control, server_control_child = ctx.Pipe()
    janus: JanusProcess | None = None
    if mode.startswith("janus"):
        assert shim is not None
        janus = JanusProcess(one_loop=mode == "janus-one-loop", cpu=SERVER_CPU)
        janus.start(shim)
        server = ctx.Process(
            target=run_janus_proxy,
            args=(janus.url, [a for a, _ in links], server_control_child),
            daemon=True,
        )
    else:
        server = _start_server(ctx, mode, [a for a, _ in links], server_control_child)
    server.start()
    measured_pid = janus.pid if janus is not None else server.pid
    if janus is None:
        _pin(server.pid, {SERVER_CPU})
    else:
        _pin(server.pid, client_cpus)  # the proxy only relays signalling
    clients: list[tuple[Any, Connection]] = []

    def start_client(index: int, role: str) -> Connection:
        control, child = ctx.Pipe()
        process = ctx.Process(target=run_client, args=(links[index][1], child, role), daemon=True)
        process.start()
        _pin(process.pid, client_cpus)
        clients.append((process, control))
        return control

    try:
        publisher = start_client(0, "publisher")
        subscribers = [start_client(i + 1, "subscriber") for i in range(n)]
        # A client process's first reply waits for its imports (aiortc, PyAV), which on a
        # loaded machine can take longer than ask()'s default.
        wait_until(
            lambda: (
                ask(publisher, {"cmd": "counts"}, SETUP_TIMEOUT)["frames_sent"] > 0
                and all(ask(s, {"cmd": "counts"}, SETUP_TIMEOUT)["has_video"] for s in subscribers)
            ),
            SETUP_TIMEOUT,
            "every subscriber to receive video",
        )
        time.sleep(WARMUP)  # encoder bitrate ramp-up (REMB) before measuring

        profiler: subprocess.Popen[bytes] | None = None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(measured_pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(profile_dir / f"{mode}-n{n}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        server_process = psutil.Process(measured_pid)
        loop_stats = janus is None
        turns0 = ask(server_control, {"cmd": "stats"})["loop_turns"] if loop_stats else None
        times0 = server_process.cpu_times()
        t0 = time.monotonic()
        pub0 = ask(publisher, {"cmd": "counts"})
        sub0 = [ask(s, {"cmd": "counts"}) for s in subscribers]
        time.sleep(seconds)  # the measurement window
        times1 = server_process.cpu_times()
        t1 = time.monotonic()
        turns1 = ask(server_control, {"cmd": "stats"})["loop_turns"] if loop_stats else None
        pub1 = ask(publisher, {"cmd": "counts"})
        sub1 = [ask(s, {"cmd": "counts"}) for s in subscribers]
        if profiler is not None:
            profiler.wait(seconds + 30)

        elapsed = t1 - t0
        cpu0, cpu1 = times0.user + times0.system, times1.user + times1.system
        sent = pub1["frames_sent"] - pub0["frames_sent"]
        pairs = list(zip(sub0, sub1, strict=True))
        fps = [(b["video_frames"] - a["video_frames"]) / elapsed for a, b in pairs]
        vpps = [(b["video_packets"] - a["video_packets"]) / elapsed for a, b in pairs]
        pps = [(b["audio_packets"] - a["audio_packets"]) / elapsed for a, b in pairs]
        forwarded = sum(
            b["video_packets"] - a["video_packets"] + b["audio_packets"] - a["audio_packets"]
            for a, b in pairs
        )
        repeated = sum(b["repeats"] - a["repeats"] for a, b in pairs)
        received = [
            100.0 * (b["video_frames"] - a["video_frames"]) / max(sent, 1) for a, b in pairs
        ]

        late_ms: float | None = None
        if n > 0:
            late = start_client(n + 1, "late")
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
            cpu_seconds=cpu1 - cpu0,
            user_seconds=times1.user - times0.user,
            forwarded_packets=forwarded,
            repeated_packets=repeated,
            video_fps=statistics.mean(fps) if fps else 0.0,
            video_pps=statistics.mean(vpps) if vpps else 0.0,
            audio_pps=statistics.mean(pps) if pps else 0.0,
            min_received_percent=min(received, default=100.0),
            publisher_fps=sent / elapsed,
            late_first_frame_ms=late_ms,
            loop_turns_per_second=(
                (turns1 - turns0) / elapsed if turns0 is not None and turns1 is not None else None
            ),
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
        if janus is not None:
            janus.stop()


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return None
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mean_x) ** 2 for x in xs)
    return num / den


@dataclass
class Summary:
    """Per-server figures over all N."""

    us_per_packet: float | None
    user_us_per_packet: float | None
    percent_per_subscriber: float | None
    idle_percent: float | None


def healthy(run: Result) -> bool:
    """True if every subscriber got (nearly) every frame and the publisher kept 30 fps.

    A run where the clients were starved (a busy machine) forwards fewer packets for
    reasons that are not the server's; it is shown but left out of the slopes.
    """
    return run.publisher_fps >= 27 and (run.n == 0 or run.min_received_percent >= 95)


def summarize(runs: list[Result]) -> Summary:
    """µs of server CPU per forwarded packet and %core per added subscriber (slopes)."""
    runs = [r for r in runs if healthy(r)]
    per_packet = _slope(
        [float(r.forwarded_packets) for r in runs], [r.cpu_seconds * 1e6 for r in runs]
    )
    user_per_packet = _slope(
        [float(r.forwarded_packets) for r in runs], [r.user_seconds * 1e6 for r in runs]
    )
    per_subscriber = _slope([float(r.n) for r in runs], [r.cpu_percent for r in runs])
    idle = next((r.cpu_percent for r in runs if r.n == 0), None)
    return Summary(per_packet, user_per_packet, per_subscriber, idle)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    """Parse arguments, run every server for each N, print a table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="0,1,2,4,8,16", help="comma-separated subscriber counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument(
        "--modes", default="yitang,janus-one-loop,janus-stock", help=",".join(MODES)
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="write py-spy profiles (raw) to this directory"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.n.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    if not counts or any(c < 0 or c > 32 for c in counts) or not 0 < args.seconds <= 300:
        parser.error("N must be 0..32 and seconds 0..300")
    if any(m not in MODES for m in modes):
        parser.error(f"modes are {', '.join(MODES)}")
    shim = ensure_janus() if any(m.startswith("janus") for m in modes) else None

    results: dict[tuple[str, int], Result] = {}
    for n in counts:
        for mode in modes:
            print(f"running {mode} N={n} ...", file=sys.stderr, flush=True)
            try:
                results[(mode, n)] = run_once(
                    mode, n, args.seconds, shim=shim, profile_dir=args.profile
                )
            except (TimeoutError, RuntimeError, OSError) as exc:
                # A starved client or a server that failed: report it, go on with the rest.
                print(f"  {mode} N={n} failed: {exc!r}", file=sys.stderr, flush=True)

    print(
        f"server on CPU {SERVER_CPU} of {os.cpu_count()} (clients on any CPU);"
        f" {args.seconds:.0f} s windows"
    )
    header = (
        f"{'server':15} {'N':>3} {'CPU %':>7} {'fwd pkt/s':>10} {'us/fwd pkt':>11}"
        f" {'repeat %':>8} {'fps/sub':>8} {'video pps':>10} {'audio pps':>10} {'min recv %':>11}"
        f" {'pub fps':>8} {'loop/s':>7} {'late ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for (mode, n), r in results.items():
        late = f"{r.late_first_frame_ms:.0f}" if r.late_first_frame_ms is not None else "n/a"
        if not healthy(r):
            late += "  (starved clients: not in the slopes)"
        rate = r.forwarded_packets / args.seconds
        per_packet = 1e6 * r.cpu_seconds / r.forwarded_packets if r.forwarded_packets else None
        print(
            f"{mode:15} {n:>3} {r.cpu_percent:>7.1f} {rate:>10.0f} {_fmt(per_packet, '.1f'):>11}"
            f" {100 * r.repeated_packets / max(r.forwarded_packets, 1):>8.1f}"
            f" {r.video_fps:>8.1f} {r.video_pps:>10.1f} {r.audio_pps:>10.1f}"
            f" {r.min_received_percent:>11.1f} {r.publisher_fps:>8.1f}"
            f" {_fmt(r.loop_turns_per_second, '.0f'):>7} {late:>8}"
        )
    print()
    summaries = {m: summarize([r for (mode, _), r in results.items() if mode == m]) for m in modes}
    print(
        f"{'server':15} {'us/fwd packet':>14} {'(user space)':>13} {'%core/subscriber':>17}"
        f" {'%core at N=0':>13}"
    )
    for mode, summary in summaries.items():
        print(
            f"{mode:15} {_fmt(summary.us_per_packet, '.1f'):>14}"
            f" {_fmt(summary.user_us_per_packet, '.1f'):>13}"
            f" {_fmt(summary.percent_per_subscriber, '.2f'):>17}"
            f" {_fmt(summary.idle_percent, '.1f'):>13}"
        )
    for mine in YITANG_MODES:
        ours = summaries.get(mine)
        for baseline in (
            "yitang-libsrtp",
            "yitang-no-gso",
            "janus-one-loop",
            "janus-stock",
            "relay",
        ):
            if baseline == mine or (baseline.startswith("yitang-") and mine != "yitang"):
                continue
            theirs = summaries.get(baseline)
            if ours is None or theirs is None:
                continue
            if ours.idle_percent and theirs.idle_percent:
                ratio = ours.idle_percent / theirs.idle_percent
                print(f"ratio {mine} / {baseline}, receiving a publisher (N = 0): {ratio:.2f}")
            if ours.us_per_packet and theirs.us_per_packet:
                ratio = ours.us_per_packet / theirs.us_per_packet
                print(f"ratio {mine} / {baseline}, per forwarded packet: {ratio:.2f}")
            if ours.percent_per_subscriber and theirs.percent_per_subscriber:
                ratio = ours.percent_per_subscriber / theirs.percent_per_subscriber
                print(f"ratio {mine} / {baseline}, per added subscriber: {ratio:.2f}")


if __name__ == "__main__":
    main()
