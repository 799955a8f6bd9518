"""Benchmark: what quality tiers save in server bytes, and what they cost in server CPU.

    python bench/tiers.py                          # 12 venues, 10 s windows
    python bench/tiers.py --venues 3 --seconds 1 --json   # the smoke test's size

The Zhuzhou shape: V venues (default 12, the seed article's session), each
publishing its camera and microphone and receiving everyone else. The host
(venue 0) and the floor holder (venue 1) are on the stage (the room's
spotlight); every other venue is a tile. Two runs, one after the other, with
the same clients on the same server code:

* ``tiers``: each venue publishes its camera twice, a high (default 640x360,
  600 kbit/s) and a low encoding (320x180, 150 kbit/s) declared as ``low_video``
  (what the browser client does); each receiver gets the stage high, tiles low;
* ``no-tiers``: each venue publishes the high encoding only (an older client,
  which declares no ``low_video``): the server has nothing else to send, and
  every receiver gets every camera high.

The server is one process with the production MediaRoom (compiled fan-out),
set up as the rooms layer would (the stage is the room's spotlight), with
per-receiver adaptation off: on a busy machine starved clients report loss,
and receivers stepped down would make a run cheaper for reasons that are not
the stage/tile tiers measured here. Venues are aiortc clients packed several
per process (12 venues are 24 peer connections). Publishers send pre-encoded
VP8 paced at 30 fps and Opus (server/loadtest/clip.py: nothing is encoded
live); receivers count RTP packets and bytes without decoding
(server/loadtest/receiver_stats.py), in the datagram callback after SRTP
(server/loadtest/cheap_receive.py: aiortc's own receive path starved the
clients at 12 venues; ``--aiortc-receive`` takes it, for comparison). So
receivers send no NACK (a lost packet stays lost) and no REMB; their receiver
reports stay true, and adaptation is off anyway.

Measured over the window (after every receiver gets video from every other
venue), with several rounds alternating which mode goes first: the RTP payload
bytes/s and packets/s the server sent (its own counters, what its RTCP sender
reports count; add ~50 bytes a packet for RTP, SRTP and UDP/IP headers), its
CPU (user+system, % of one core), the client processes' CPU (all together),
what the receivers counted, and the ratios tiers / no-tiers (median over
rounds). A run counts when every publisher kept >= 27 fps and every receiver
got every camera at >= 27 fps with < 5 % loss; one where the machine starved
the clients is printed and left out (the server's own counts drop with them:
it loses packets on the way in, and a slot that lost one waits for a
keyframe). Every loop and wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_client import PipeReader, ask, client_configuration, wait_until

from server.media import (
    IceAddress,
    MediaConfig,
    MediaEvent,
    MediaNode,
    SubscriberOffer,
    fanout,
)
from server.media.quality_tiers import TierThresholds

SETUP_TIMEOUT = 180.0
WARMUP = 2.0
HOST, FLOOR = 0, 1  # the venues on the stage
MODES = ("tiers", "no-tiers")


#: Per-receiver adaptation off (only a link losing every packet steps down): on a busy
#: machine starved clients report loss and jitter, and receivers stepped down would
#: make either run cheaper for reasons that are not the stage/tile tiers measured here.
NO_ADAPTATION_SETTINGS = {"down_loss": 1.0, "up_loss": 0.99, "down_jitter": 1e9, "remb_hold": 1e9}


def venue_id(index: int) -> str:
    """The participant id of venue `index`."""
    return f"venue{index:02d}"


@dataclass(frozen=True)
class Encodings:
    """What each venue's camera sends (width, height, bit/s), high and low."""

    high: tuple[int, int, int] = (640, 360, 600_000)
    low: tuple[int, int, int] = (320, 180, 150_000)


# --- Server process ---------------------------------------------------------------------


async def _server_main(conns: list[Connection], control: Connection) -> None:
    if not fanout.available():
        raise RuntimeError(f"the compiled fan-out is not built: {fanout.IMPORT_ERROR}")
    stop = asyncio.Event()
    locks: dict[str, asyncio.Lock] = {}
    tasks: set[asyncio.Task[None]] = set()
    conn_of: dict[str, Connection] = {}

    def on_event(event: MediaEvent) -> None:
        if isinstance(event, SubscriberOffer):
            conn_of[event.participant_id].send(
                {"type": "offer", "pid": event.participant_id, "sdp": event.sdp}
            )

    node = MediaNode(
        MediaConfig(
            ice_addresses=[IceAddress("127.0.0.1")],
            ice_remote_allow=[ipaddress.ip_network("127.0.0.0/8")],
            tiers=TierThresholds(**NO_ADAPTATION_SETTINGS),
        )
    )
    room = node.room("zhuzhou", on_event=on_event)
    room.set_spotlight({venue_id(HOST), venue_id(FLOOR)})

    async def handle(conn: Connection, message: dict[str, Any]) -> None:
        pid = message["pid"]
        async with locks.setdefault(pid, asyncio.Lock()):
            if message["type"] == "join":
                conn_of[pid] = conn
                await room.add_participant(pid, can_publish=True)
            elif message["type"] == "offer":
                answer = await room.publish(pid, message["sdp"], low_video=message["low_video"])
                conn.send({"type": "answer", "pid": pid, "sdp": answer})
            elif message["type"] == "answer":
                await room.subscriber_answer(pid, message["sdp"])

    def dispatcher(conn: Connection) -> Any:
        def on_message(message: dict[str, Any]) -> None:
            task = asyncio.ensure_future(handle(conn, message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_message

    readers = [PipeReader(conn, dispatcher(conn)) for conn in conns]

    def on_control(message: dict[str, Any]) -> None:
        if message["cmd"] == "stats":
            levels = {pid: room.video_quality(pid)[0] for pid in conn_of}
            stats = room.stats()
            control.send(
                {
                    "packets_sent": stats.packets_sent,
                    "octets_sent": stats.octets_sent,
                    "levels": levels,
                }
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
    control.send({"stopped": True})


def run_server(conns: list[Connection], control: Connection) -> None:
    """Server process entry point."""
    asyncio.run(_server_main(conns, control))


# --- Client processes (several venues each) ----------------------------------------------


async def _clients_main(
    server: Connection,
    control: Connection,
    indexes: list[int],
    tiers: bool,
    enc: Encodings,
    cheap: bool,
) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack
    from aiortc.rtcrtpsender import RTCRtpSender

    from server.loadtest import cheap_receive
    from server.loadtest.clip import ClipTrack, encode_audio, encode_video
    from server.loadtest.receiver_stats import TrackCounter
    from server.media.aiortc_internals import gather_only_on, install_jitter_buffer

    loopback = ("127.0.0.1",)
    high_clip = encode_video("vp8", *enc.high[:2], 30, enc.high[2])
    low_clip = encode_video("vp8", *enc.low[:2], 30, enc.low[2]) if tiers else None
    audio_clip = encode_audio()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    pids = [venue_id(i) for i in indexes]
    publish_pcs: dict[str, RTCPeerConnection] = {}
    subscribe_pcs: dict[str, RTCPeerConnection] = {}
    cameras: dict[str, ClipTrack] = {}
    counters: dict[str, list[TrackCounter]] = {pid: [] for pid in pids}
    hooks: dict[str, list[cheap_receive.CheapReceive]] = {}
    locks = {pid: asyncio.Lock() for pid in pids}
    window: dict[str, Any] = {}
    seen: dict[int, int] = {}  # frames per counter at the last "ready"

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def vp8_only(transceiver: Any) -> None:
        capabilities = RTCRtpSender.getCapabilities("video")
        transceiver.setCodecPreferences(
            [c for c in capabilities.codecs if c.mimeType in ("video/VP8", "video/rtx")]
        )

    async def publish(pid: str) -> None:
        pc = publish_pcs[pid] = RTCPeerConnection(client_configuration())
        pc.addTransceiver(ClipTrack(audio_clip), direction="sendonly")
        camera = cameras[pid] = ClipTrack(high_clip)
        high = pc.addTransceiver(camera, direction="sendonly")
        vp8_only(high)
        low_video = None
        if low_clip is not None:
            low = pc.addTransceiver(ClipTrack(low_clip), direction="sendonly")
            vp8_only(low)
        with gather_only_on(loopback):
            await pc.setLocalDescription(await pc.createOffer())
        if low_clip is not None:
            low_video = {low.mid: high.mid}
        server.send(
            {"type": "offer", "pid": pid, "sdp": pc.localDescription.sdp, "low_video": low_video}
        )

    async def on_offer(pid: str, sdp: str) -> None:
        async with locks[pid]:
            if stop.is_set():
                return
            pc = subscribe_pcs.get(pid)
            if pc is None:
                pc = subscribe_pcs[pid] = RTCPeerConnection(client_configuration())

                @pc.on("track")
                def on_track(track: MediaStreamTrack, pc: Any = pc) -> None:
                    receiver = next(
                        t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                    )
                    counter = TrackCounter(track.kind)
                    install_jitter_buffer(receiver, counter)
                    counters[pid].append(counter)

            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            with gather_only_on(loopback):
                await pc.setLocalDescription(await pc.createAnswer())
            if cheap:
                hooks[pid] = cheap_receive.install(pc)
            server.send({"type": "answer", "pid": pid, "sdp": pc.localDescription.sdp})

    async def on_answer(pid: str, sdp: str) -> None:
        await publish_pcs[pid].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def on_server(message: dict[str, Any]) -> None:
        if message["type"] == "offer":
            spawn(on_offer(message["pid"], message["sdp"]))
        elif message["type"] == "answer":
            spawn(on_answer(message["pid"], message["sdp"]))

    def on_control(message: dict[str, Any]) -> None:
        if message["cmd"] == "ready":
            # Per venue: the other venues' cameras whose video is arriving (frames came
            # since the last ask: a slot waiting for a keyframe does not count).
            flowing = {pid: 0 for pid in pids}
            for pid in pids:
                for counter in counters[pid]:
                    if counter.kind == "video" and counter.frames > seen.get(id(counter), 0):
                        flowing[pid] += 1
                    seen[id(counter)] = counter.frames
            states = {
                pid: (
                    publish_pcs[pid].connectionState if pid in publish_pcs else "-",
                    subscribe_pcs[pid].connectionState if pid in subscribe_pcs else "-",
                    sum(1 for c in counters[pid] if c.kind == "video"),
                )
                for pid in pids
            }
            control.send({"flowing": flowing, "states": states})
        elif message["cmd"] == "start":
            window["at"] = time.monotonic()
            window["sent"] = {pid: cameras[pid].sent for pid in pids}
            window["hooked"] = sum(h.packets for hs in hooks.values() for h in hs)
            for tracks in counters.values():
                for counter in tracks:
                    counter.start_window()
        elif message["cmd"] == "window":
            seconds = time.monotonic() - window["at"]
            control.send(
                {
                    "seconds": seconds,
                    "publisher_fps": {
                        pid: (cameras[pid].sent - window["sent"][pid]) / seconds for pid in pids
                    },
                    "tracks": {pid: [c.window(seconds) for c in counters[pid]] for pid in pids},
                    "hooked": sum(h.packets for hs in hooks.values() for h in hs)
                    - window["hooked"],
                }
            )
        elif message["cmd"] == "stop":
            stop.set()

    server_reader = PipeReader(server, on_server)
    control_reader = PipeReader(control, on_control)
    for pid in pids:
        server.send({"type": "join", "pid": pid})
        await publish(pid)
    await stop.wait()
    server_reader.close()
    control_reader.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for pc in (*publish_pcs.values(), *subscribe_pcs.values()):
        await pc.close()
    control.send({"stopped": True})


def run_clients(
    server: Connection,
    control: Connection,
    indexes: list[int],
    tiers: bool,
    enc: Encodings,
    cheap: bool = True,
) -> None:
    """Client process entry point: the venues `indexes`, publishing and receiving
    (`cheap`: counting in the datagram callback; else through aiortc's receive path)."""
    asyncio.run(_clients_main(server, control, indexes, tiers, enc, cheap))


# --- Orchestrator -------------------------------------------------------------------------


@dataclass
class Result:
    """One run (one mode)."""

    mode: str
    venues: int
    seconds: float
    #: The server process's CPU time (user+system) over the window, in % of one core.
    cpu_percent: float
    #: RTP payload bytes/s the server sent (its own counters: what RTCP SRs count).
    server_bytes_per_second: float
    server_packets_per_second: float
    #: RTP bytes/s the receivers counted (payload + 12-byte header), and of it video.
    delivered_bytes_per_second: float
    delivered_video_bytes_per_second: float
    min_publisher_fps: float
    min_track_fps: float
    max_track_loss: float
    levels_not_full: dict[str, str]
    load_average: float
    #: The client processes' CPU time over the window, in % of one core (all of them).
    clients_cpu_percent: float
    #: The share of received packets counted in the datagram callback (cheap_receive).
    hooked_share: float

    @property
    def clients_kept_up(self) -> bool:
        """Every receiver got every camera at 30 fps, with < 5 % loss."""
        return self.min_track_fps >= 27 and self.max_track_loss < 0.05

    @property
    def valid(self) -> bool:
        """Every publisher kept 30 fps and every receiver kept up.

        With starved clients the server's own counts drop too (it loses packets on the
        way in, and a slot that lost one waits for the next keyframe): such a run says
        nothing about the tiers.
        """
        return self.min_publisher_fps >= 27 and self.clients_kept_up


def run_once(
    mode: str, venues: int, processes: int, seconds: float, enc: Encodings, cheap: bool = True
) -> Result:
    """Start the server and the client processes for one mode, measure one window."""
    ctx = multiprocessing.get_context("spawn")
    groups = [list(range(venues))[i::processes] for i in range(processes)]
    groups = [g for g in groups if g]
    links = [ctx.Pipe() for _ in groups]
    server_control, server_control_child = ctx.Pipe()
    server = ctx.Process(
        target=run_server, args=([a for a, _ in links], server_control_child), daemon=True
    )
    server.start()
    clients: list[tuple[Any, Connection]] = []
    try:
        for group, (_, child_end) in zip(groups, links, strict=True):
            control, child = ctx.Pipe()
            process = ctx.Process(
                target=run_clients,
                args=(child_end, child, group, mode == "tiers", enc, cheap),
                daemon=True,
            )
            process.start()
            clients.append((process, control))
        flowing: dict[str, int] = {}
        states: dict[str, Any] = {}

        def all_flowing() -> bool:
            for _, control in clients:
                reply = ask(control, {"cmd": "ready"}, SETUP_TIMEOUT)
                flowing.update(reply["flowing"])
                states.update(reply["states"])
            return all(n >= venues - 1 for n in flowing.values())

        try:
            wait_until(all_flowing, SETUP_TIMEOUT, "every venue to receive every other's video")
        except TimeoutError as exc:
            raise TimeoutError(
                f"{exc}: video flowing per venue {flowing}; (publish connection, subscribe"
                f" connection, video tracks) per venue {states}"
            ) from None
        time.sleep(WARMUP)  # slots settle on their encodings, receivers' first reports
        load = os.getloadavg()[0]
        server_process = psutil.Process(server.pid)
        stats0 = ask(server_control, {"cmd": "stats"})
        client_processes = [psutil.Process(p.pid) for p, _ in clients]
        times0 = server_process.cpu_times()
        clients0 = sum(sum(p.cpu_times()[:2]) for p in client_processes)
        t0 = time.monotonic()
        for _, control in clients:
            control.send({"cmd": "start"})
        time.sleep(seconds)  # the measurement window
        times1 = server_process.cpu_times()
        clients1 = sum(sum(p.cpu_times()[:2]) for p in client_processes)
        t1 = time.monotonic()
        windows = [ask(c, {"cmd": "window"}) for _, c in clients]
        stats1 = ask(server_control, {"cmd": "stats"})
    finally:
        for _, control in clients:
            with contextlib.suppress(OSError):
                control.send({"cmd": "stop"})
        for process, _ in clients:
            process.join(15)
            if process.is_alive():
                process.terminate()
        with contextlib.suppress(OSError):
            server_control.send({"cmd": "stop"})
        server.join(15)
        if server.is_alive():
            server.terminate()

    elapsed = t1 - t0
    tracks = [t for w in windows for per_venue in w["tracks"].values() for t in per_venue]
    video = [t for t in tracks if t["kind"] == "video" and t["kbps"] > 0]
    received = sum(
        t["packets_per_second"] * w["seconds"]
        for w in windows
        for per_venue in w["tracks"].values()
        for t in per_venue
    )

    def rate(key: str) -> float:
        return float(stats1[key] - stats0[key]) / elapsed

    return Result(
        mode=mode,
        venues=venues,
        seconds=elapsed,
        cpu_percent=100.0 * (times1.user + times1.system - times0.user - times0.system) / elapsed,
        server_bytes_per_second=rate("octets_sent"),
        server_packets_per_second=rate("packets_sent"),
        delivered_bytes_per_second=sum(t["kbps"] for t in tracks) * 1000 / 8,
        delivered_video_bytes_per_second=sum(t["kbps"] for t in video) * 1000 / 8,
        min_publisher_fps=min(f for w in windows for f in w["publisher_fps"].values()),
        min_track_fps=min((t["fps"] for t in video), default=0.0),
        max_track_loss=max((t["loss"] for t in tracks), default=0.0),
        levels_not_full={p: lv for p, lv in stats1["levels"].items() if lv != "full"},
        load_average=load,
        clients_cpu_percent=100.0 * (clients1 - clients0) / elapsed,
        hooked_share=sum(w["hooked"] for w in windows) / received if received else 0.0,
    )


def _ratios(tiers: Result, plain: Result) -> dict[str, float]:
    return {
        "bytes": tiers.server_bytes_per_second / plain.server_bytes_per_second,
        "packets": tiers.server_packets_per_second / plain.server_packets_per_second,
        "cpu": tiers.cpu_percent / plain.cpu_percent,
        "cpu_per_packet": (tiers.cpu_percent / tiers.server_packets_per_second)
        / (plain.cpu_percent / plain.server_packets_per_second),
    }


def main() -> None:
    """Parse arguments, run both modes (in rounds), print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venues", type=int, default=12, help="venues publishing and receiving")
    parser.add_argument("--processes", type=int, default=4, help="client processes (venues packed)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs, modes alternating")
    parser.add_argument("--high", default="640x360@600", help="high encoding: WxH@kbit/s")
    parser.add_argument("--low", default="320x180@150", help="low encoding: WxH@kbit/s")
    parser.add_argument("--modes", default="tiers,no-tiers", help=",".join(MODES))
    parser.add_argument(
        "--aiortc-receive",
        action="store_true",
        help="receivers take aiortc's whole receive path (no cheap_receive: for comparison)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    def encoding(text: str) -> tuple[int, int, int]:
        size, _, kbps = text.partition("@")
        width, _, height = size.partition("x")
        return int(width), int(height), int(kbps) * 1000

    try:
        enc = Encodings(high=encoding(args.high), low=encoding(args.low))
    except ValueError:
        parser.error("encodings are WxH@kbit/s, e.g. 640x360@600")
    modes = [m for m in args.modes.split(",") if m]
    if not 2 <= args.venues <= 16 or not 1 <= args.processes <= 16 or not 1 <= args.rounds <= 10:
        parser.error("venues must be 2..16, processes 1..16, rounds 1..10")
    if not 0 < args.seconds <= 300 or any(m not in MODES for m in modes):
        parser.error(f"seconds must be in (0, 300], modes among {', '.join(MODES)}")

    runs: list[Result] = []
    pairs: list[dict[str, float]] = []
    failures = 0
    for round_ in range(args.rounds):
        # Alternate which mode goes first: the machine's load drifts during a run.
        order = modes if round_ % 2 == 0 else modes[::-1]
        this_round: dict[str, Result] = {}
        for mode in order:
            print(f"round {round_ + 1}: {mode}, {args.venues} venues ...", file=sys.stderr)
            try:
                this_round[mode] = run_once(
                    mode, args.venues, args.processes, args.seconds, enc, not args.aiortc_receive
                )
            except (TimeoutError, RuntimeError, OSError) as exc:
                print(f"  {mode} failed: {exc!r}", file=sys.stderr, flush=True)
                failures += 1
        runs += this_round.values()
        tiers, plain = this_round.get("tiers"), this_round.get("no-tiers")
        if tiers and plain and tiers.valid and plain.valid:
            pairs.append(_ratios(tiers, plain))
    ratios = {key: statistics.median(p[key] for p in pairs) for key in pairs[0]} if pairs else {}

    if args.json:
        report = {
            "runs": [{**asdict(r), "valid": r.valid, "clients_kept_up": r.clients_kept_up}
                     for r in runs],
            "ratios": ratios,
            "valid_pairs": len(pairs),
        }  # fmt: skip
        print(json.dumps(report, indent=2))
        sys.exit(1 if failures else 0)

    path = "through aiortc" if args.aiortc_receive else "in the datagram callback"
    print(
        f"{args.venues} venues in {min(args.processes, args.venues)} client processes on"
        f" {os.cpu_count()} CPUs, {args.seconds:.0f} s windows; high {args.high}, low {args.low}"
        " (kbit/s) VP8 + Opus; stage: host + floor holder; per-receiver adaptation off;"
        f" receivers count {path}"
    )
    header = (
        f"{'mode':9} {'Mbit/s sent':>11} {'pkt/s sent':>10} {'CPU %core':>10} {'clients %':>9}"
        f" {'delivered':>9} {'(video)':>8} {'pub fps':>8} {'min fps':>8} {'max loss':>9}"
        f" {'load':>6}  notes"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        notes = [] if r.valid else ["STARVED clients: not in the ratios"]
        if r.levels_not_full:
            notes.append(f"stepped down: {r.levels_not_full}")
        print(
            f"{r.mode:9} {r.server_bytes_per_second * 8 / 1e6:>11.2f}"
            f" {r.server_packets_per_second:>10.0f} {r.cpu_percent:>10.1f}"
            f" {r.clients_cpu_percent:>9.0f}"
            f" {r.delivered_bytes_per_second * 8 / 1e6:>9.2f}"
            f" {r.delivered_video_bytes_per_second * 8 / 1e6:>8.2f}"
            f" {r.min_publisher_fps:>8.1f} {r.min_track_fps:>8.1f} {100 * r.max_track_loss:>8.1f}%"
            f" {r.load_average:>6.1f}  {'; '.join(notes) or 'ok'}"
        )
    print()
    if ratios:
        print(f"ratios tiers / no-tiers (median of {len(pairs)} pairs):")
        print(f"  bytes sent by the server      {ratios['bytes']:.2f}")
        print(f"  packets sent by the server    {ratios['packets']:.2f}")
        print(f"  server CPU                    {ratios['cpu']:.2f}")
        print(f"  server CPU per packet sent    {ratios['cpu_per_packet']:.2f}")
    elif len(modes) == 2:
        print("no round with both runs valid: no ratios (the machine starved the clients)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
