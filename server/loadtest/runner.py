"""`yitang loadtest`: headless aiortc participants against any Yitang server.

    yitang loadtest http://127.0.0.1:8080 --publishers 2 --subscribers 20 --duration 30

With the admin key it creates a session of its own, issues tokens, and starts
worker processes (server/loadtest/worker.py) that join as members who publish
a pre-encoded clip (server/loadtest/clip.py) and observers who only watch; a
host in this process can give the floor round the publishers every
`--speaker-switch` seconds. After everyone joined and a warm-up, it measures a
window of `--duration` seconds: per received track the frame rate, bitrate,
loss (from RTP sequence numbers) and freezes; per participant the time from
join to the first video frame; the server's CPU when the server runs on this
machine (found by its listening port); the delay the room's node itself
measured for the packets it forwarded (server/loadtest/server_delay.py); the
CPUs' steal time on a virtual machine (server/loadtest/cpu_steal.py); and
whether its own client processes kept up (their CPU and event-loop lag,
server/loadtest/client_load.py): when they did not, the figures measure the
clients as much as the server, and the report says so. It deletes its session at the end.

Every wait is bounded; a participant that cannot join is reported, not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, TextIO

import aiohttp
import psutil

from server.loadtest import cpu_steal, server_delay
from server.loadtest.client_load import judge
from server.loadtest.clip import DEFAULT_KEYFRAME_INTERVAL
from server.loadtest.latency import latencies, send_times
from server.loadtest.participant import LoadParticipant
from server.loadtest.worker import JOIN_SPACING, ParticipantSpec, WorkerPlan, run_worker

#: Bounds of the options (a load test is a tool, not a way to make the machine fall over).
MAX_PUBLISHERS = 50
MAX_SUBSCRIBERS = 2000
MAX_PROCESSES = 64
#: Most observers that may time sampled video packets (server/loadtest/latency.py).
MAX_LATENCY_PROBES = 8


class LoadTestError(Exception):
    """The load test could not run (bad options, server refused, workers failed)."""


@dataclass(frozen=True)
class LoadTestOptions:
    """What to run; see `yitang loadtest --help`."""

    url: str
    api_key: str
    publishers: int = 1
    subscribers: int = 4
    duration: float = 30.0
    width: int = 640
    height: int = 480
    fps: int = 30
    bitrate_kbps: int = 1500
    codec: str = "vp8"
    #: Seconds between the publishers' unasked keyframes (clip.py; a request is answered).
    keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL
    speaker_switch: float | None = None
    processes: int | None = None
    #: Observers that time sampled video packets, in a process of their own (latency.py).
    latency_probes: int = 2
    warmup: float = 3.0
    join_timeout: float = 30.0
    #: Local addresses ICE gathers on; None: aioice's own choice (loopback URLs: 127.0.0.1).
    ice_addresses: tuple[str, ...] | None = None
    #: Media through the TURN relay the server hands out, and nothing else.
    relay_only: bool = False

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.publishers <= MAX_PUBLISHERS, f"publishers: 1 to {MAX_PUBLISHERS}"),
            (0 <= self.subscribers <= MAX_SUBSCRIBERS, f"subscribers: 0 to {MAX_SUBSCRIBERS}"),
            (1 <= self.duration <= 3600, "duration: 1 to 3600 seconds"),
            (16 <= self.width <= 1920 and 16 <= self.height <= 1080, "resolution: up to 1920x1080"),
            (self.width % 2 == 0 and self.height % 2 == 0, "resolution: even width and height"),
            (1 <= self.fps <= 60, "fps: 1 to 60"),
            (50 <= self.bitrate_kbps <= 8000, "bitrate: 50 to 8000 kbit/s"),
            (self.codec in ("vp8", "h264"), "codec: vp8 or h264"),
            (1 <= self.keyframe_interval <= 60, "keyframe interval: 1 to 60 seconds"),
            (self.speaker_switch is None or self.speaker_switch >= 1, "speaker switch: >= 1 s"),
            (0 <= self.warmup <= 600, "warmup: 0 to 600 seconds"),
            (self.processes is None or 1 <= self.processes <= MAX_PROCESSES, "processes: 1-64"),
            (0 <= self.latency_probes <= MAX_LATENCY_PROBES, "latency probes: 0 to 8"),
        ]
        for ok, message in checks:
            if not ok:
                raise LoadTestError(message)
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise LoadTestError(f"not an http(s) URL: {self.url!r}")


def parse_resolution(text: str) -> tuple[int, int]:
    """`640x480` -> (640, 480)."""
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise LoadTestError(f"resolution is WIDTHxHEIGHT, not {text!r}") from None


async def run_loadtest(options: LoadTestOptions, progress: TextIO | None = None) -> dict[str, Any]:
    """Run the load test and return its report (see `format_report` for the fields)."""
    url = options.url.rstrip("/")
    ice = options.ice_addresses
    if ice is None and _is_loopback(url):
        ice = ("127.0.0.1",)  # aioice never gathers loopback by itself
    headers = {"Authorization": f"Bearer {options.api_key}"}
    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        room_id = await _create_room(http, url)
        try:
            return await _run_in_room(options, http, url, room_id, ice, progress)
        finally:
            with contextlib.suppress(Exception):
                async with http.delete(f"{url}/api/rooms/{room_id}"):
                    pass


async def _run_in_room(
    options: LoadTestOptions,
    http: aiohttp.ClientSession,
    url: str,
    room_id: str,
    ice: tuple[str, ...] | None,
    progress: TextIO | None,
) -> dict[str, Any]:
    roles = [(f"p{i + 1}", "member") for i in range(options.publishers)]
    roles += [(f"s{i + 1}", "observer") for i in range(options.subscribers)]
    specs = [
        ParticipantSpec(identity, await _token(http, url, room_id, identity, role), publishes)
        for identity, role in roles
        for publishes in [role == "member"]
    ]
    host = LoadParticipant(
        url,
        await _token(http, url, room_id, "host", "host"),
        video=None,
        audio=None,
        codec=options.codec,
        ice_addresses=ice,
    )
    await host.join()
    # The latency probes (the first observers) get a process of their own, which asks
    # for real-time priority: their arrival times must not wait for the load's processes.
    observers = [spec.identity for spec in specs if not spec.publishes]
    probing = set(observers[: options.latency_probes])
    probes = tuple(dataclasses.replace(s, probe=True) for s in specs if s.identity in probing)
    rest = [spec for spec in specs if spec.identity not in probing]
    count = options.processes or max(1, min(len(rest), psutil.cpu_count() or 1))
    shares: list[tuple[ParticipantSpec, ...]] = [tuple(rest[i::count]) for i in range(count)]
    plans = [
        WorkerPlan(
            base_url=url,
            participants=share,
            codec=options.codec,
            width=options.width,
            height=options.height,
            fps=options.fps,
            bitrate=options.bitrate_kbps * 1000,
            keyframe_interval=options.keyframe_interval,
            ice_addresses=ice,
            join_timeout=options.join_timeout,
            relay_only=options.relay_only,
            prioritized=share is probes,
        )
        for share in [*shares, probes]
        if share
    ]
    server = await asyncio.to_thread(_ServerCpu.find, url)
    workers = _Workers(plans)
    bar = _ProgressBar(progress, options.duration, len(specs))
    try:
        workers.start()
        longest_share = max(len(share) for share in shares)
        joined = await workers.collect(
            "joined", timeout=options.join_timeout + longest_share * JOIN_SPACING + 60, bar=bar
        )
        switches = 0
        publishers = [spec.identity for spec in specs if spec.publishes]
        if options.speaker_switch and publishers:
            # The first floor is given before the window: a video the server had paused
            # (last-N) resumes at its next keyframe, which the window must not count.
            with contextlib.suppress(Exception):
                await host.signaling.grant_floor(publishers[0])
                switches += 1
        await workers.wait(options.warmup, bar)
        node = await _room_node(http, url, room_id)
        delays_before = (
            None if node is None else await server_delay.scrape(url, options.api_key, node)
        )
        if server is not None:
            server.start()
        ticks_before = cpu_steal.read_ticks()
        runner_cpu = time.process_time()
        workers.send({"cmd": "measure"})
        started = time.monotonic()
        next_switch = started + (options.speaker_switch or 0)
        while (now := time.monotonic()) < started + options.duration:
            if options.speaker_switch and now >= next_switch:
                with contextlib.suppress(Exception):
                    await host.signaling.grant_floor(publishers[switches % len(publishers)])
                    switches += 1
                next_switch += options.speaker_switch
            bar.draw(now - started, workers)
            await workers.wait(min(0.5, started + options.duration - now), None)
        seconds = time.monotonic() - started
        runner_cpu = (time.process_time() - runner_cpu) / seconds * 100
        cpu = server.percent() if server else None
        ticks_after = cpu_steal.read_ticks()
        delays_after = None
        if node is not None and delays_before is not None:
            delays_after = await server_delay.scrape(url, options.api_key, node)
        workers.send({"cmd": "stop", "seconds": seconds})
        reports = await workers.collect("report", timeout=60, bar=None)
    finally:
        bar.done()
        await host.close()
        await workers.stop()
    participants = [p for report in reports for p in report["participants"]]
    errors = [e for report in joined for e in report["errors"]]
    loads = [report["load"] for report in reports if "load" in report]
    clients = judge(loads, len(os.sched_getaffinity(0)), runner_cpu).as_dict()
    counted = [load["counted_in_callback"] for load in loads if load.get("counted_in_callback")]
    clients["receive_path"] = next((load["receive_path"] for load in loads), None)
    clients["counted_in_callback"] = min(counted, default=None)
    tallied = [load["tallied"] for load in loads if load.get("tallied") is not None]
    clients["tallied"] = min(tallied, default=None)
    # How the probes' process ran: "realtime", "nice" or "normal" (latency.py).
    clients["probe_priority"] = next((ld["priority"] for ld in loads if ld.get("priority")), None)
    for key in ("loop_lag_max_ms", "gc_pause_max_ms"):  # the longest stall of any client
        clients[key] = max((load[key] for load in loads if load.get(key) is not None), default=None)
    summary = _summary(options, participants, errors, seconds, cpu, switches, room_id)
    held = None
    if node is not None and delays_before is not None and delays_after is not None:
        held = server_delay.window(node, delays_before, delays_after)
    steal = busy = None
    if ticks_before is not None and ticks_after is not None:
        steal = cpu_steal.steal_percent(ticks_before, ticks_after)
        busy = cpu_steal.busy_percent(ticks_before, ticks_after)
    return {
        **summary,
        "server_forward_delay": held,
        "cpu_steal_percent": steal,
        "cpu_busy_percent": busy,
        "clients": clients,
    }


async def _room_node(http: aiohttp.ClientSession, url: str, room_id: str) -> str | None:
    """The node that forwards the room's media (None: not known)."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
        async with http.get(f"{url}/api/rooms/{room_id}") as response:
            if response.status == 200:
                node = (await response.json()).get("media_node")
                return node if isinstance(node, str) else None
    return None


async def _create_room(http: aiohttp.ClientSession, url: str) -> str:
    room_id = f"loadtest-{secrets.token_hex(4)}"
    body = {
        "id": room_id,
        "title": "负载测试 load test",
        "scheduled_start": datetime.now(UTC).isoformat(timespec="seconds"),
        "venues": [
            {"id": "main", "name": "主会场", "level": "provincial", "main": True},
            {"id": "branch", "name": "分会场", "level": "county"},
        ],
        "agenda": [{"title": "负载测试", "planned_speakers": []}],
    }
    async with http.post(f"{url}/api/rooms", json=body) as response:
        if response.status != 201:
            raise LoadTestError(f"creating the room: {response.status} {await response.text()}")
    return room_id


async def _token(
    http: aiohttp.ClientSession, url: str, room_id: str, identity: str, role: str
) -> str:
    venue = "main" if role == "host" else "branch"
    body = {"identity": identity, "name": identity, "role": role, "venue": venue}
    async with http.post(f"{url}/api/rooms/{room_id}/tokens", json=body) as response:
        if response.status != 201:
            raise LoadTestError(f"issuing a token: {response.status} {await response.text()}")
        return str((await response.json())["token"])


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


class _Workers:
    """The worker processes and their pipes."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        self.plans = plans
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[Connection] = []
        self.frames: dict[int, int] = {}
        self.joined = 0
        self._inbox: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        loop = asyncio.get_running_loop()
        for index, plan in enumerate(self.plans):
            ours, theirs = context.Pipe()
            process = context.Process(target=run_worker, args=(plan, theirs), daemon=True)
            process.start()
            theirs.close()
            self.processes.append(process)
            self.pipes.append(ours)
            loop.add_reader(ours.fileno(), self._read, index, ours)

    def _read(self, index: int, pipe: Connection) -> None:
        try:
            while pipe.poll():
                message = pipe.recv()
                if message["type"] == "progress":
                    self.frames[index] = message["frames"]
                else:
                    if message["type"] == "joined":
                        self.joined += message["ok"]
                    self._inbox.put_nowait((index, message))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            self._inbox.put_nowait((index, {"type": "exited"}))

    def send(self, command: dict[str, Any]) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(command)

    async def collect(
        self, kind: str, timeout: float, bar: _ProgressBar | None
    ) -> list[dict[str, Any]]:
        """One message of `kind` from every worker (LoadTestError if one exits or is late)."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(self.plans):
            if bar is not None:
                bar.draw(None, self)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadTestError(f"workers did not report {kind!r} within {timeout:.0f} s")
            try:
                index, message = await asyncio.wait_for(self._inbox.get(), min(remaining, 0.5))
            except TimeoutError:
                continue
            if message["type"] == "exited":
                raise LoadTestError(f"worker {index} exited (see its output above)")
            if message["type"] == kind:
                got[index] = message
        return [got[i] for i in sorted(got)]

    async def wait(self, seconds: float, bar: _ProgressBar | None) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if bar is not None:
                bar.draw(None, self)
            await asyncio.sleep(min(left, 0.5))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                loop.remove_reader(pipe.fileno())
            pipe.close()
        for process in self.processes:
            await loop.run_in_executor(None, process.join, 20)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 5)


class _ServerCpu:
    """CPU time of the server processes listening on the URL's port (if on this machine)."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.start()

    def start(self) -> None:
        """Count from now (the measurement window's start)."""
        self.started = time.monotonic()
        self.cpu = self._cpu()

    @classmethod
    def find(cls, url: str) -> _ServerCpu | None:
        """The server's processes, found by their listening port (None: not on this
        machine). Slow (it reads every process's sockets, a second or more of CPU
        beside a large test): called before the participants join, never while the
        clients' media flows."""
        if not _is_loopback(url):
            return None
        port = urllib.parse.urlsplit(url).port or 80
        try:
            listening = {
                c.pid
                for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
            }
            processes = [psutil.Process(pid) for pid in listening]
            processes += [child for p in processes for child in p.children(recursive=True)]
        except (psutil.Error, OSError):
            return None
        return cls(processes) if processes else None

    def _cpu(self) -> float:
        total = 0.0
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def percent(self) -> float:
        """% of one core used by the server since this object was made."""
        return 100 * (self._cpu() - self.cpu) / max(1e-6, time.monotonic() - self.started)


class _ProgressBar:
    """One redrawn line on a terminal (a line every few seconds elsewhere)."""

    def __init__(self, out: TextIO | None, duration: float, participants: int) -> None:
        self.out = out
        self.duration = duration
        self.participants = participants
        self.tty = bool(out and out.isatty())
        self._last_line = 0.0
        self._last_frames: tuple[float, int] | None = None
        self._rate = 0.0

    def draw(self, elapsed: float | None, workers: _Workers) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        frames = sum(workers.frames.values())
        if self._last_frames is not None and now - self._last_frames[0] >= 1:
            self._rate = (frames - self._last_frames[1]) / (now - self._last_frames[0])
            self._last_frames = (now, frames)
        elif self._last_frames is None:
            self._last_frames = (now, frames)
        done = 0.0 if elapsed is None else min(1.0, elapsed / self.duration)
        bar = "#" * round(30 * done) + "." * (30 - round(30 * done))
        phase = "joining" if elapsed is None else f"{elapsed:4.0f}/{self.duration:.0f} s"
        line = (
            f"[{bar}] {phase}  joined {workers.joined}/{self.participants}"
            f"  {self._rate:6.0f} video frames/s received"
        )
        if self.tty:
            self.out.write("\r" + line)
            self.out.flush()
        elif now - self._last_line >= 5:
            self.out.write(line + "\n")
            self.out.flush()
            self._last_line = now

    def done(self) -> None:
        if self.out is not None and self.tty:
            self.out.write("\n")
            self.out.flush()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


#: What the report keeps of each participant's join (worker.py's report).
_JOIN_KEYS = (
    "identity",
    "publishes",
    "join_to_joined",
    "join_to_first_offer",
    "join_to_connected",
    "join_to_first_frame",
    "subscriber_offers",
)


def _summary(
    options: LoadTestOptions,
    participants: list[dict[str, Any]],
    errors: list[str],
    seconds: float,
    cpu: float | None,
    switches: int,
    room_id: str,
) -> dict[str, Any]:
    tracks = [{"subscriber": p["identity"], **t} for p in participants for t in p["tracks"]]
    video_tracks = [t for t in tracks if t["kind"] == "video"]
    # A video the server did not forward all window (last-N, a hidden tile) is no frame
    # rate of 0: the figures are over the videos that came.
    video = [t for t in video_tracks if t["packets_per_second"] > 0]
    audio = [t for t in tracks if t["kind"] == "audio"]
    joins = [p["join_to_first_frame"] for p in participants if p["join_to_first_frame"]]
    joined = [p["join_to_joined"] for p in participants if p["join_to_joined"]]
    first_offers = [p["join_to_first_offer"] for p in participants if p["join_to_first_offer"]]
    connected = [p["join_to_connected"] for p in participants if p["join_to_connected"]]
    offers = [p["subscriber_offers"] for p in participants]
    forwarded = sum(t["packets_per_second"] for t in tracks)
    sent = {p["identity"]: send_times(*p["sent"]) for p in participants if p["publishes"]}
    arrivals = [arrival for p in participants for arrival in p["arrived"]]
    delays, unmatched = latencies(sent, arrivals)
    delays_ms = [1000 * delay for delay in delays]
    return {
        "room": room_id,
        "options": {
            "publishers": options.publishers,
            "subscribers": options.subscribers,
            "resolution": f"{options.width}x{options.height}",
            "fps": options.fps,
            "bitrate_kbps": options.bitrate_kbps,
            "codec": options.codec,
            "keyframe_interval": options.keyframe_interval,
            "speaker_switch": options.speaker_switch,
            "relay_only": options.relay_only,
        },
        "window_seconds": round(seconds, 2),
        "participants": len(participants),
        "join_errors": errors,
        "floor_changes": switches,
        "server_cpu_percent": None if cpu is None else round(cpu, 1),
        "packets_per_second_received": round(forwarded, 1),
        "video": {
            "tracks": len(video_tracks),
            "paused": len(video_tracks) - len(video),
            "fps_p50": _percentile([t["fps"] for t in video], 0.5),
            "fps_min": min((t["fps"] for t in video), default=None),
            "kbps_p50": _percentile([t["kbps"] for t in video], 0.5),
            "loss_mean": statistics.fmean(t["loss"] for t in video) if video else None,
            "loss_max": max((t["loss"] for t in video), default=None),
            "freezes": sum(t["freezes"] or 0 for t in video),
        },
        "audio": {
            "tracks": len(audio),
            "packets_per_second_p50": _percentile([t["packets_per_second"] for t in audio], 0.5),
            "loss_max": max((t["loss"] for t in audio), default=None),
        },
        "join_to_first_frame": {
            "count": len(joins),
            "p50": _percentile(joins, 0.5),
            "p95": _percentile(joins, 0.95),
            "max": max(joins, default=None),
            # The steps before it: the join acked, the first subscriber offer received.
            "joined_p50": _percentile(joined, 0.5),
            "first_offer_p50": _percentile(first_offers, 0.5),
            "connected_p50": _percentile(connected, 0.5),
        },
        # Sampled video packets, from the publisher's SRTP to a probe subscriber's (latency.py).
        "latency_ms": {
            "probes": sum(1 for p in participants if p.get("probe")),
            "packets": len(delays_ms),
            "unmatched": unmatched,
            "p50": _percentile(delays_ms, 0.5),
            "p99": _percentile(delays_ms, 0.99),
            "max": max(delays_ms, default=None),
        },
        # Offers each participant's subscribe connection got until the report: the joins'
        # renegotiations (coalesced, a burst of joins costs each a few) and any later ones.
        "subscriber_offers": {
            "p50": _percentile(offers, 0.5),
            "max": max(offers, default=None),
            "total": sum(offers),
        },
        "tracks": tracks,
        # Each participant's join: seconds from its start to each step, and its offers.
        "joins": [{key: p[key] for key in _JOIN_KEYS if key in p} for p in participants],
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""

    def num(value: float | None, spec: str = ".1f", unit: str = "") -> str:
        return "-" if value is None else f"{value:{spec}}{unit}"

    def delay_summary(delays: dict[str, Any], what: str) -> str:
        # One line of the server's own delay (to the last copy, or to each copy).
        return (
            f"p50 {num(delays['p50_ms'], '.2f', ' ms')}, p99 {num(delays['p99_ms'], '.2f', ' ms')}"
            f", {num(delays['within_5ms'], '.2%')} within 5 ms, "
            f"{num(delays['over_100ms'], '.0f')} over 100 ms ({what})"
        )

    def us(ms: float | None) -> str:
        # A delay kept in milliseconds, shown in microseconds.
        return num(None if ms is None else 1000 * ms, ".0f", " µs")

    o, v, a, j = report["options"], report["video"], report["audio"], report["join_to_first_frame"]
    offers = report["subscriber_offers"]
    lines = [
        f"{o['publishers']} publishers, {o['subscribers']} subscribers, {o['resolution']} "
        f"{o['codec']} at {o['bitrate_kbps']} kbit/s, a keyframe every "
        f"{num(o.get('keyframe_interval'), 'g', ' s')} and when asked, "
        f"{report['window_seconds']:.0f} s measured",
        f"server CPU          {num(report['server_cpu_percent'], '.1f', ' % of a core')}",
        f"packets received/s  {report['packets_per_second_received']:.0f}",
        f"video tracks        {v['tracks']} ({v['paused']} not forwarded): "
        f"fps p50 {num(v['fps_p50'])} min {num(v['fps_min'])}, "
        f"{num(v['kbps_p50'], '.0f')} kbit/s, loss mean {num(v['loss_mean'], '.2%')} "
        f"max {num(v['loss_max'], '.2%')}, {v['freezes']} freezes",
        f"audio tracks        {a['tracks']}: {num(a['packets_per_second_p50'])} packets/s p50, "
        f"loss max {num(a['loss_max'], '.2%')}",
        f"join to first frame p50 {num(j['p50'], '.2f', ' s')}, p95 {num(j['p95'], '.2f', ' s')}, "
        f"max {num(j['max'], '.2f', ' s')} ({j['count']} participants); p50 of its steps: "
        f"joined {num(j['joined_p50'], '.2f', ' s')}, first offer "
        f"{num(j['first_offer_p50'], '.2f', ' s')}, subscribe connected "
        f"{num(j['connected_p50'], '.2f', ' s')}",
        f"subscriber offers   p50 {num(offers['p50'], '.0f')} max "
        f"{num(offers['max'], '.0f')} per participant, {offers['total']} in all",
        f"floor changes       {report['floor_changes']}",
    ]
    latency = report["latency_ms"]
    if latency["packets"]:
        lines.append(
            f"latency, video      p50 {num(latency['p50'], '.2f', ' ms')}, p99 "
            f"{num(latency['p99'], '.2f', ' ms')}, max {num(latency['max'], '.1f', ' ms')} "
            f"({latency['packets']} sampled packets at {latency['probes']} probe(s) at "
            f"{(report.get('clients') or {}).get('probe_priority') or 'unknown'} priority; "
            "publisher's SRTP to subscriber's: server and clients)"
        )
    held = report.get("server_forward_delay")
    if held and held.get("packets"):
        lines.append(
            "server's own delay  "
            + delay_summary(
                held,
                f"{held['packets']} forwarded packets at node {held['node']}: kernel's "
                "receipt to last copy sent",
            )
        )
        copies = held.get("per_copy")
        if copies and copies.get("copies"):
            lines.append(
                "  to each copy      "
                + delay_summary(
                    copies,
                    f"{copies['copies']} copies: kernel's receipt to each copy sent, what "
                    "each receiver's packet waited",
                )
            )
        rtcp = held.get("rtcp")
        if rtcp and rtcp.get("compound_packets"):
            count = rtcp["compound_packets"]
            lines.append(
                f"  RTCP handled      {count} compound packets "
                f"({count / report['window_seconds']:.0f}/s): mean {us(rtcp['mean_ms'])}, "
                f"p50 {us(rtcp['p50_ms'])}, p99 {us(rtcp['p99_ms'])} each (receiver "
                "reports and feedback, in the same read path: nothing forwarded meanwhile)"
            )
        loop = held.get("loop")
        if loop and loop.get("stretches"):
            longest = loop["longest_ms"]
            lines.append(
                f"  event loop busy   {loop['stretches']} stretches between waits, "
                f"{num(loop['over_5ms'], '.0f')} over 5 ms, the longest "
                + ("over 1 s" if longest is None else f"at most {longest:g} ms")
                + f", p99 {us(loop['p99_ms'])} (callbacks, tasks, timers: datagrams wait "
                "meanwhile)"
            )
        receivers = held.get("receivers")
        if receivers:
            levels = receivers["levels"]
            lines.append(
                f"  receivers' links  {levels.get('full', 0)} full, "
                f"{levels.get('reduced', 0)} reduced, {levels.get('audio_only', 0)} audio only "
                f"at the window's end; {receivers['steps_down']} steps down and "
                f"{receivers['steps_up']} up in the window (quality tiers: a reduced "
                "receiver gets the spotlight in low quality, audio only no video)"
            )
    steal = report.get("cpu_steal_percent")
    if steal:
        shares = ", ".join(f"{cpu} {share:.1f} %" for cpu, share in sorted(steal.items()))
        lines.append(f"CPU steal           {shares} (time the hypervisor gave to others)")
    busy = report.get("cpu_busy_percent")
    if busy:
        shares = ", ".join(
            f"{cpu} {share['busy']:.1f} % (softirq {share['softirq']:.1f} %)"
            for cpu, share in sorted(busy.items())
        )
        lines.append(
            f"CPU busy            {shares} (everything that ran on each CPU; the server CPU "
            "above is its process's own time)"
        )
    clients = report.get("clients")
    if clients is not None:
        load = (
            f"{clients['processes']} processes on {clients['cores']} core(s), CPU "
            f"{num(clients['cpu_percent_total'], '.0f', ' %')} in all, max "
            f"{num(clients['cpu_percent_max'], '.0f', ' % of a core')}, loop lag p95 max "
            f"{num(clients['loop_lag_p95_ms_max'], '.0f', ' ms')} (longest "
            f"{num(clients.get('loop_lag_max_ms'), '.0f', ' ms')}), longest GC pause "
            f"{num(clients.get('gc_pause_max_ms'), '.0f', ' ms')}"
        )
        verdict = f"LIMITED: {clients['why']}" if clients["limited"] else "kept up"
        lines.append(f"load clients        {load}: {verdict}")
        if clients.get("counted_in_callback") is not None:
            lines.append(
                f"receivers           {clients['receive_path']} ingest, "
                f"{clients['counted_in_callback']:.1%} of packets counted in the datagram callback"
                + (
                    f", {clients['tallied']:.1%} straight into their tallies"
                    if clients.get("tallied") is not None
                    else ""
                )
            )
    if report["join_errors"]:
        errors = report["join_errors"]
        lines.append(f"join errors         {len(errors)}: {errors[0]}")
    return "\n".join(lines)


def main_entry(options: LoadTestOptions, as_json: bool) -> int:
    """Run from the CLI; print the report; exit status 1 if anyone failed to join."""
    report = asyncio.run(run_loadtest(options, progress=sys.stderr))
    print(json.dumps(report, ensure_ascii=False, indent=2) if as_json else format_report(report))
    return 1 if report["join_errors"] else 0
