"""A load-test worker process: a share of the participants, on its own event loop.

The runner starts several (one core cannot run hundreds of aiortc peers) and
talks to each over a pipe:

    runner -> worker   {"cmd": "measure"}            the measurement window starts
                       {"cmd": "stop", "seconds": S} report the window and leave (S: its
                                                     length if it never started)
    worker -> runner   {"type": "joined", "ok": N, "errors": [...]}
                       {"type": "progress", "frames": F}   (every second)
                       {"type": "report", "participants": [...],
                        "load": {"cpu_percent": C, "loop_lag_p95_ms": L, ...}}
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from server.loadtest.client_load import ClientLoadProbe
from server.loadtest.clip import DEFAULT_KEYFRAME_INTERVAL, encode_audio, encode_video
from server.loadtest.participant import LoadParticipant, receives_compiled
from server.media import event_loop
from server.media.aiortc_internals import receivers_without_estimator

#: Joins of one worker are spread out by this much (a thundering herd measures nothing).
JOIN_SPACING = 0.05


@dataclass(frozen=True)
class ParticipantSpec:
    """Who one load-test participant is."""

    identity: str
    token: str
    publishes: bool
    #: Notes when sampled video packets arrive (the load test's latency, latency.py).
    probe: bool = False


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process runs."""

    base_url: str
    participants: tuple[ParticipantSpec, ...]
    codec: str
    width: int
    height: int
    fps: int
    bitrate: int
    ice_addresses: tuple[str, ...] | None
    join_timeout: float
    relay_only: bool = False
    #: The latency probes' process: asks for real-time scheduling in the window
    #: (see _prioritize).
    prioritized: bool = False
    #: Seconds of the video clip: its keyframe comes this often unasked (clip.py).
    keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL


def run_worker(plan: WorkerPlan, pipe: Connection) -> None:
    """Process entry point, on the server's event loop: its wait reads the subscribe
    connections' sockets in C (server/media/event_loop.py, as in a node)."""
    # No load receiver estimates bandwidth (participant.count_in_callback), so none is
    # given the estimator aiortc would make and drop (1 000 objects each).
    with (
        asyncio.Runner(loop_factory=event_loop.new_event_loop) as runner,
        receivers_without_estimator(),
    ):
        runner.run(_work(plan, pipe))


def _prioritize() -> str:
    """Run this process before the load's own while the window lasts: the latency
    probes' arrival times must not include time spent waiting for a core the other
    client processes hold. SCHED_FIFO where allowed (root, or CAP_SYS_NICE), else a
    lower nice value, else nothing; returns which ("realtime", "nice", "normal") for
    the report. In the window the probes only receive (a few % of a core); their
    joins and their leaving, which take more, run at the normal priority
    (:func:`_deprioritize`), so as not to hold a core from everything else."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "realtime"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice"
    except OSError:
        return "normal"


def _deprioritize(priority: str) -> None:
    """Undo :func:`_prioritize` (lowering one's own priority is always allowed)."""
    if priority == "realtime":
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    elif priority == "nice":
        os.nice(10)


async def _work(plan: WorkerPlan, pipe: Connection) -> None:
    priority: str | None = None
    publishes = any(p.publishes for p in plan.participants)
    video = encode_video(
        plan.codec, plan.width, plan.height, plan.fps, plan.bitrate, plan.keyframe_interval
    )
    audio = encode_audio() if publishes else None
    participants = [
        LoadParticipant(
            plan.base_url,
            spec.token,
            video=video if spec.publishes else None,
            audio=audio if spec.publishes else None,
            codec=plan.codec,
            ice_addresses=plan.ice_addresses,
            relay_only=plan.relay_only,
            probe=spec.probe,
        )
        for spec in plan.participants
    ]
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_reader(pipe.fileno(), lambda: _read(pipe, commands))

    async def join(index: int, participant: LoadParticipant) -> None:
        await asyncio.sleep(index * JOIN_SPACING)
        try:
            async with asyncio.timeout(plan.join_timeout):
                await participant.join()
        except Exception as exc:  # reported, not raised: the others go on
            participant.failed = f"{type(exc).__name__}: {exc}"[:200]

    await asyncio.gather(*(join(i, p) for i, p in enumerate(participants)))
    # Everything made so far (aiortc's peers, the clips) lives to the end: out of the
    # collector's sight, a full collection no longer walks it and stalls this process
    # (~200 ms was seen with nine publishers), which delayed what it sent and received.
    gc.collect()
    gc.freeze()
    errors = [p.failed for p in participants if p.failed]
    pipe.send({"type": "joined", "ok": len(participants) - len(errors), "errors": errors})
    progress = asyncio.create_task(_progress(participants, pipe))
    load = ClientLoadProbe()
    window_started: float | None = None
    try:
        while True:
            command = await commands.get()
            if command["cmd"] == "measure":
                window_started = time.monotonic()
                if plan.prioritized:
                    priority = _prioritize()
                load.start()
                for participant in participants:
                    for track in participant.tracks:
                        track.start_window()
                    _record_latency(participant, True)
            elif command["cmd"] == "stop":
                if priority is not None:
                    _deprioritize(priority)
                # Rates are over this process's own window: the runner's stop comes
                # after it read the server's CPU and delays (HTTP, up to a second on
                # a busy machine), and counting over its shorter figure overstated
                # every rate (32 fps was reported for 30 sent).
                seconds = (
                    time.monotonic() - window_started
                    if window_started is not None
                    else float(command["seconds"])
                )
                for participant in participants:
                    _record_latency(participant, False)
                report = [
                    _report(spec, p, seconds)
                    for spec, p in zip(plan.participants, participants, strict=True)
                ]
                pipe.send(
                    {
                        "type": "report",
                        "participants": report,
                        "load": {
                            **load.result(),
                            **_receive_path(participants),
                            "priority": priority,
                        },
                    }
                )
                break
    finally:
        load.stop()
        progress.cancel()
        loop.remove_reader(pipe.fileno())
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)


def _record_latency(participant: LoadParticipant, recording: bool) -> None:
    participant.send_log.recording = recording
    if participant.arrival_log is not None:
        participant.arrival_log.recording = recording


def _receive_path(participants: list[LoadParticipant]) -> dict[str, Any]:
    # How the receivers counted: the share of packets counted in the datagram callback
    # without an aiortc packet (the compiled ingest's C, or cheap_receive); a latency
    # probe's are all handed over as packets.
    tracks = [t for p in participants if p.arrival_log is None for t in p.tracks]
    packets = sum(t.packets for t in tracks)
    added = sum(t.added for t in tracks)
    # ... and the share the compiled ingest counted from its tally table, without
    # touching a Python object (receiver_stats.py, TalliedStatistics).
    tallied = sum(t.tallied for t in tracks)
    return {
        "receive_path": "compiled" if receives_compiled() else "python",
        "counted_in_callback": None if not packets else round(1 - added / packets, 4),
        "tallied": None if not packets or not receives_compiled() else round(tallied / packets, 4),
    }


def _read(pipe: Connection, commands: asyncio.Queue[dict[str, Any]]) -> None:
    try:
        while pipe.poll():
            commands.put_nowait(pipe.recv())
    except (EOFError, OSError):
        commands.put_nowait({"cmd": "stop", "seconds": 1})  # the runner is gone: leave


async def _progress(participants: list[LoadParticipant], pipe: Connection) -> None:
    while True:
        await asyncio.sleep(1.0)
        frames = sum(t.frames for p in participants for t in p.tracks if t.kind == "video")
        pipe.send({"type": "progress", "frames": frames})


def _report(spec: ParticipantSpec, participant: LoadParticipant, seconds: float) -> dict[str, Any]:
    first_frame = participant.first_video_at
    started = participant.join_started_at

    def since_start(at: float | None) -> float | None:
        return at - started if at is not None and started is not None else None

    return {
        "identity": spec.identity,
        "publishes": spec.publishes,
        "probe": spec.probe,
        "error": participant.failed,
        "join_to_first_frame": since_start(first_frame),
        "join_to_joined": since_start(participant.joined_at),
        "join_to_first_offer": since_start(participant.first_offer_at),
        "join_to_connected": since_start(participant.subscribe_connected_at),
        "subscriber_offers": participant.offers,
        "media_restarts": participant.media_restarts,
        "tracks": [track.window(seconds) for track in participant.tracks],
        "sent": (participant.send_log.prints, participant.send_log.times),
        "arrived": participant.arrival_log.arrived if participant.arrival_log else [],
        "measured_at": time.time(),
    }
