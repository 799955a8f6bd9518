"""Benchmark: the latency an SFU adds per packet, and join to first frame — Yitang against Janus.

    python bench/latency.py --subscribers 1,4,8 --seconds 10 --joins 20
    python bench/latency.py --modes yitang,direct --subscribers 1 --seconds 2 --joins 2 --json

Servers ("modes"), all on 127.0.0.1 in the same run:

* ``yitang``: a real ``yitang serve`` process (one node), joined with signed tokens
  over Socket.IO by the project's own client (signaling/client.py);
* ``janus``: Janus 1.1.2 VideoRoom from Debian with one event loop
  (``scripts/ensure-janus``, bench/janus_server.py), ``--janus-stock`` for
  Janus's default of a loop thread per handle;
* ``direct``: no SFU at all — the publisher's peer connection connected
  straight to one subscriber's. The baseline that the other two are measured
  against: what aiortc, the kernel and the clients cost on their own.

**Per-packet latency.** One publisher process sends pre-encoded 640x480 VP8
(~1.8 Mbit/s, 30 fps) and Opus; N subscriber processes receive. The publisher
logs the time each RTP packet enters SRTP protect; each subscriber logs the time
each packet leaves SRTP unprotect (its jitter buffer is replaced by a recorder,
nothing is decoded; subscribers receive through the server's own compiled direct
ingest, server/media/ingest.py, so that a packet is logged in the socket's
callback right after SRTP, not after aiortc's queue and receive task). Both
read CLOCK_MONOTONIC (``time.monotonic``), which all processes of one machine
share. A packet is recognised on both sides by the last
32 bytes of its payload (SFUs rewrite sequence numbers, timestamps and SSRCs but
not the media); the clip repeats every 2 s, so an arrival is matched to the
latest send of the same bytes before it. Printed: p50/p99/max per packet for each
server and N, and the latency added by the SFU (server minus ``direct``, per
percentile), and Yitang's added p99 over Janus's.

**Join to first frame.** With a publisher already sending, a subscriber joins N
times, each time from scratch: for Yitang from opening the Socket.IO connection
(``RoomClient.connect``, a real token) to the first RTP packet of a VP8 keyframe
after SRTP (nothing decoded; a frame can be decoded from that packet on); for Janus
from ``attach`` (on an existing HTTP session) to the same packet. Phases are
printed so that the next engineer sees where the time goes. The publisher's
track answers keyframe requests (PLI) at once — every frame is pre-encoded twice,
as a delta frame and as a keyframe — as a live encoder would, so the time is the
servers' and not the clip's keyframe interval.

Every wait is bounded; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import fractions
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_client import LOOPBACK, MovingVideoTrack, PipeReader, ask, client_configuration
from janus_server import ROOM as JANUS_ROOM
from janus_server import JanusProcess, JanusSession, ensure_janus, run_janus_proxy

from server.loadtest.clip import ClipTrack, encode_audio
from server.media import ingest
from server.media.aiortc_internals import gather_only_on, install_jitter_buffer
from server.media.keyframes import vp8_is_keyframe_start
from signaling.client import RoomClient

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, FPS = 640, 480, 30
KEY_BYTES = 32  # the tail of a payload that identifies a packet on both sides
SETUP_TIMEOUT = 120.0  # a loaded 2-core machine starts 9 aiortc processes slowly
JOIN_TIMEOUT = 20.0
MATCH_WINDOW = 1.0  # an arrival more than this after its send is not the same packet
#: Seconds between timed joins: each is a lone joiner. (Both servers coalesce keyframe
#: requests — Yitang to one PLI per 0.5 s per publisher — so back-to-back joins would
#: time the coalescing instead.)
JOIN_SPACING = 1.0


# --- Media: a pre-encoded clip that answers keyframe requests --------------------------


@dataclass(frozen=True)
class DualClip:
    """Each frame of a 2 s clip encoded twice: as the stream's frame, and as a keyframe."""

    frames: tuple[bytes, ...]
    keyframes: tuple[bytes, ...]


def encode_dual_clip(frames: int = 2 * FPS, bitrate: int = 1_800_000) -> DualClip:
    """The scrolling pattern of bench_client.MovingVideoTrack, VP8, keyframe every second."""
    source = MovingVideoTrack()

    def encoder() -> Any:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = WIDTH, HEIGHT
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = bitrate
        codec.framerate = fractions.Fraction(FPS, 1)
        codec.time_base = fractions.Fraction(1, FPS)
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        return codec

    stream, keys = encoder(), encoder()
    delta: list[bytes] = []
    key: list[bytes] = []
    for index in range(frames):
        for codec, out, forced in ((stream, delta, index % FPS == 0), (keys, key, True)):
            picture = source.picture(index)
            picture.pts = index
            picture.pict_type = av.video.frame.PictureType.I if forced else 0
            out += [bytes(p) for p in codec.encode(picture)]
    return DualClip(tuple(delta[:frames]), tuple(key[:frames]))


class KeyframeOnRequestTrack(MediaStreamTrack):
    """Plays a DualClip at 30 fps; after a PLI/FIR the next frame is the keyframe version.

    aiortc only forces keyframes on tracks it encodes itself: for an ``av.Packet``
    track it just records the request (``RTCRtpSender.__force_keyframe``), which
    this track reads and clears, as aiortc's own encoder path does.
    """

    kind = "video"

    def __init__(self, clip: DualClip) -> None:
        super().__init__()
        self.clip = clip
        self.sender: RTCRtpSender | None = None
        self.sent = 0
        self.keyframes_on_request = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / FPS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        index = self.sent % len(self.clip.frames)
        data = self.clip.frames[index]
        if self.sender is not None and getattr(self.sender, "_RTCRtpSender__force_keyframe", False):
            self.sender._RTCRtpSender__force_keyframe = False  # type: ignore[attr-defined]
            data = self.clip.keyframes[index]
            self.keyframes_on_request += 1
        packet = av.Packet(data)
        packet.pts = self.sent * (90_000 // FPS)
        packet.time_base = fractions.Fraction(1, 90_000)
        self.sent += 1
        return packet


def payload_key(payload: bytes) -> bytes:
    """What identifies a packet across an SFU: the tail of its payload."""
    return bytes(payload[-KEY_BYTES:])


def rtp_payload(data: bytes) -> bytes:
    """The payload of a plain RTP packet (after CSRCs, header extension; without padding)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    return data[offset:end]


def log_sends(log: list[tuple[bytes, float]]) -> None:
    """Log (key, time) of every RTP packet this process sends, just before SRTP protect.

    Patches the class: only call it in a process whose connections are all the publisher's.
    """
    original = RTCDtlsTransport._send_rtp

    async def _send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        if not 192 <= data[1] <= 223:  # not RTCP (RFC 5761 payload-type ranges)
            log.append((payload_key(rtp_payload(data)), time.monotonic()))
        await original(self, data)

    RTCDtlsTransport._send_rtp = _send_rtp  # type: ignore[method-assign]


@dataclass
class ArrivalRecorder:
    """Jitter-buffer replacement: logs (key, time) of each packet after SRTP, never decodes."""

    kind: str
    log: list[tuple[bytes, float]] = field(default_factory=list)
    first_at: float | None = None
    first_keyframe_at: float | None = None
    keyframe: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        now = time.monotonic()
        self.log.append((payload_key(packet.payload), now))
        if self.first_at is None:
            self.first_at = now
        if (
            self.first_keyframe_at is None
            and self.kind == "video"
            and vp8_is_keyframe_start(packet.payload)
        ):
            self.first_keyframe_at = now
            self.keyframe.set()
        return False, None


# --- Client processes --------------------------------------------------------------------


class Peer:
    """A publisher or subscriber, signalling through Yitang (RoomClient) or a pipe.

    The pipe protocol is bench_client.py's: Janus's proxy (janus_server.py) speaks it,
    and for ``direct`` the publisher's and the subscriber's pipes are the two ends of one.
    """

    def __init__(self, role: str, signaling: dict[str, Any], clip: DualClip | None) -> None:
        self.role = role
        self.signaling = signaling
        self.pc = RTCPeerConnection(client_configuration())
        self.recorders: list[ArrivalRecorder] = []
        self.video = KeyframeOnRequestTrack(clip) if clip is not None else None
        self.client: RoomClient | None = None
        self.reader: PipeReader | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        recorder = ArrivalRecorder(track.kind)
        install_jitter_buffer(transceiver.receiver, recorder)
        self.recorders.append(recorder)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        """Join and publish or wait for the offer."""
        if self.signaling["kind"] == "yitang":
            self.client = RoomClient(self.signaling["url"], self.signaling["token"])
            self.client.on("subscriber_offer", self._on_yitang_offer)
            await self.client.connect()
        else:
            conn: Connection = self.signaling["conn"]
            self.reader = PipeReader(conn, self._on_pipe)
            conn.send({"type": "join", "role": self.role})
        if self.role == "publisher":
            await self._publish()

    async def _publish(self) -> None:
        assert self.video is not None
        self.pc.addTransceiver(ClipTrack(encode_audio()), direction="sendonly")
        transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
        self.video.sender = transceiver.sender
        with gather_only_on(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        if self.client is not None:
            ack = await self.client.call("publish_offer", {"sdp": sdp})
            await self.pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
        else:
            self.signaling["conn"].send({"type": "offer", "sdp": sdp})

    async def _answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        with gather_only_on(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        # The server's own receive path (the compiled direct ingest) in the client too:
        # each packet is logged in the socket's callback, right after SRTP, rather than
        # after aiortc's queue and receive task -- so the clients, six of them at N = 4
        # on two cores, add less of their own delay to what is measured.
        ingest.install(self.pc)
        answer: str = self.pc.localDescription.sdp
        return answer

    async def _on_yitang_offer(self, payload: dict[str, Any]) -> None:
        assert self.client is not None
        answer = await self._answer(payload["sdp"])
        await self.client.call(
            "subscriber_answer", {"sdp": answer, "offer_id": payload.get("offer_id")}
        )

    def _on_pipe(self, message: dict[str, Any]) -> None:
        conn: Connection = self.signaling["conn"]
        if message["type"] == "offer" and self.role == "subscriber":

            async def reply() -> None:
                conn.send({"type": "answer", "sdp": await self._answer(message["sdp"])})

            self._spawn(reply())
        elif message["type"] == "answer" and self.role == "publisher":
            description = RTCSessionDescription(message["sdp"], "answer")
            self._spawn(self.pc.setRemoteDescription(description))

    async def close(self) -> None:
        """Leave and close (bounded)."""
        if self.reader is not None:
            self.reader.close()
        for task in list(self.tasks):
            task.cancel()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)


async def _peer_main(
    role: str, signaling: dict[str, Any], control: Connection, clip: DualClip | None
) -> None:
    sends: list[tuple[bytes, float]] = []
    if role == "publisher":
        log_sends(sends)
    peer = Peer(role, signaling, clip)
    stop = asyncio.Event()

    def on_control(message: dict[str, Any]) -> None:
        if message["cmd"] == "status":
            received = sum(len(r.log) for r in peer.recorders)
            sent = peer.video.sent if peer.video else 0
            control.send({"received": received, "sent": sent})
        elif message["cmd"] == "mark":  # the measurement window starts: forget the warm-up
            sends.clear()
            for recorder in peer.recorders:
                recorder.log.clear()
            control.send({"ok": True})
        elif message["cmd"] == "stop":
            stop.set()

    reader = PipeReader(control, on_control)  # answers while the peer is joining too
    await peer.start()
    await stop.wait()
    reader.close()
    arrivals = [entry for r in peer.recorders for entry in r.log]
    keyframes = peer.video.keyframes_on_request if peer.video else 0
    await peer.close()
    control.send({"sends": sends, "arrivals": arrivals, "keyframes_on_request": keyframes})


def run_peer(
    role: str, signaling: dict[str, Any], control: Connection, clip: DualClip | None
) -> None:
    """Process entry point: a publisher (``clip`` given) or a subscriber."""
    asyncio.run(_peer_main(role, signaling, control, clip))


# --- Orchestration -----------------------------------------------------------------------


class Processes:
    """Client (and proxy) processes started by one measurement; all stopped at the end."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.controls: list[tuple[Any, Connection]] = []
        self.others: list[tuple[Any, Connection]] = []

    def peer(self, role: str, signaling: dict[str, Any], clip: DualClip | None) -> Connection:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(target=run_peer, args=(role, signaling, theirs, clip))
        process.start()
        self.controls.append((process, ours))
        return ours

    def janus_proxy(self, url: str, conns: list[Connection]) -> None:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(target=run_janus_proxy, args=(url, conns, theirs))
        process.start()
        self.others.append((process, ours))

    def stop(self) -> list[dict[str, Any]]:
        """Stop the peers (their logs, in start order), then the proxies."""
        logs = []
        for _process, conn in self.controls:
            try:
                logs.append(ask(conn, {"cmd": "stop"}, timeout=30))
            except (TimeoutError, OSError, EOFError):
                logs.append({})
        for _process, conn in self.others:
            with contextlib.suppress(TimeoutError, OSError, EOFError):
                ask(conn, {"cmd": "stop"}, timeout=10)
        for process, _ in self.controls + self.others:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
        return logs


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until ``predicate()`` (the processes send no events); TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def match_latencies(
    sends: list[tuple[bytes, float]], arrivals: list[tuple[bytes, float]]
) -> list[float]:
    """Seconds from send to arrival per matched packet (latest send of the same bytes before)."""
    by_key: dict[bytes, list[float]] = {}
    for key, at in sends:
        by_key.setdefault(key, []).append(at)
    latencies = []
    for key, at in arrivals:
        times = by_key.get(key)
        if not times:
            continue
        index = bisect.bisect_right(times, at) - 1
        if index >= 0 and at - times[index] <= MATCH_WINDOW:
            latencies.append(at - times[index])
    return latencies


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99, max in milliseconds (and how many packets)."""
    ordered = sorted(values)
    if not ordered:
        return {"packets": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"packets": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": ordered[-1] * 1000}


def measure_packets(
    make_signaling: Callable[[Processes, int], tuple[dict[str, Any], list[dict[str, Any]]]],
    subscribers: int,
    seconds: float,
    clip: DualClip,
) -> dict[str, Any]:
    """One publisher, ``subscribers`` subscribers: per-packet latency over ``seconds``."""
    processes = Processes()
    try:
        publisher_signaling, subscriber_signaling = make_signaling(processes, subscribers)
        publisher = processes.peer("publisher", publisher_signaling, clip)
        subs = [processes.peer("subscriber", s, None) for s in subscriber_signaling]
        for conn in subs:
            wait_for(
                lambda conn=conn: ask(conn, {"cmd": "status"}, SETUP_TIMEOUT)["received"] > 100,
                SETUP_TIMEOUT,
                "every subscriber to receive media",
            )
        time.sleep(1.0)  # warm-up: the first keyframe's burst and retransmissions pass
        for conn in (publisher, *subs):
            ask(conn, {"cmd": "mark"})
        time.sleep(seconds)
    finally:
        logs = processes.stop()
    sends = logs[0].get("sends", [])
    latencies = [v for log in logs[1:] for v in match_latencies(sends, log.get("arrivals", []))]
    arrivals = sum(len(log.get("arrivals", [])) for log in logs[1:])
    result = percentiles(latencies)
    result["unmatched"] = arrivals - len(latencies)
    # Below ~0.95 the clients (or the machine) could not keep up: the figures are theirs.
    result["delivered"] = len(latencies) / (len(sends) * subscribers) if sends else 0.0
    return result


# --- Yitang server -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class YitangServer:
    """A ``yitang serve`` process of one node on 127.0.0.1, with rooms and tokens by REST."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="yitang-bench-latency-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until /readyz answers (bounded)."""
        command = [
            sys.executable, "-m", "server", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.dir),
            "--ice-address", "127.0.0.1", "--ice-remote-allow", "127.0.0.0/8",
            "--render-workers", "0", "--workers", "1",
        ]  # fmt: skip
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=(self.dir / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + SETUP_TIMEOUT
        while not asyncio.run(self._ready()):
            if self.process.poll() is not None:
                raise RuntimeError(f"yitang serve exited: see {self.dir / 'server.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("yitang serve did not become ready")
            time.sleep(0.2)  # the process gives no readiness signal but its port

    async def _ready(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as http, http.get(f"{self.url}/readyz") as r:
                return r.status == 200
        return False

    @property
    def api_key(self) -> str:
        """The admin key the server wrote into its data directory."""
        return (self.dir / "api-key").read_text().strip()

    async def room_with_tokens(self, identities: list[tuple[str, str]]) -> list[str]:
        """A new room; a token per (identity, role)."""
        room = f"latency-{secrets.token_hex(4)}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        body = {
            "id": room,
            "title": "latency bench",
            "scheduled_start": datetime.now(UTC).isoformat(timespec="seconds"),
            "venues": [
                {"id": "main", "name": "main", "level": "provincial", "main": True},
                {"id": "branch", "name": "branch", "level": "county"},
            ],
            "agenda": [{"title": "bench", "planned_speakers": []}],
        }
        tokens = []
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{self.url}/api/rooms", json=body) as response:
                if response.status != 201:
                    raise RuntimeError(f"creating a room: {response.status}")
            for identity, role in identities:
                grant = {"identity": identity, "name": identity, "role": role, "venue": "branch"}
                async with http.post(f"{self.url}/api/rooms/{room}/tokens", json=grant) as response:
                    if response.status != 201:
                        raise RuntimeError(f"issuing a token: {response.status}")
                    tokens.append(str((await response.json())["token"]))
        return tokens

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; remove its data."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Join to first frame -----------------------------------------------------------------

#: Milestones of a join, in the order they happen (ms from the start of the join).
YITANG_PHASES = ("socket", "joined", "offer", "answer_sent", "answer_acked", "ice", "dtls",
                 "first_packet", "keyframe")  # fmt: skip
JANUS_PHASES = ("attached", "offer", "answer_sent", "answer_acked", "ice", "dtls",
                "first_packet", "keyframe")  # fmt: skip


class JoiningSubscriber:
    """A fresh subscriber peer connection that notes when each milestone is reached."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.marks: dict[str, float] = {}
        self.pc = RTCPeerConnection(client_configuration())
        self.video = ArrivalRecorder("video")
        self.pc.on("track", self._on_track)
        self.pc.on("iceconnectionstatechange", self._on_ice)
        self.pc.on("connectionstatechange", self._on_connection)

    def mark(self, name: str) -> None:
        """Note that ``name`` happened now (the first time only)."""
        self.marks.setdefault(name, time.monotonic())

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        recorder = self.video if track.kind == "video" else ArrivalRecorder(track.kind)
        install_jitter_buffer(transceiver.receiver, recorder)

    def _on_ice(self) -> None:
        if self.pc.iceConnectionState == "completed":
            self.mark("ice")

    def _on_connection(self) -> None:
        if self.pc.connectionState == "connected":
            self.mark("dtls")

    async def answer(self, sdp: str) -> str:
        """Apply the server's offer and make the answer (ICE gathered in full)."""
        self.mark("offer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        with gather_only_on(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        ingest.install(self.pc)  # as Peer._answer
        self.mark("answer_sent")
        answer: str = self.pc.localDescription.sdp
        return answer

    async def first_keyframe(self) -> dict[str, float]:
        """Wait for the first keyframe packet; the milestones in ms from the start."""
        await asyncio.wait_for(self.video.keyframe.wait(), JOIN_TIMEOUT)
        assert self.video.first_at is not None
        assert self.video.first_keyframe_at is not None
        self.marks["first_packet"] = self.video.first_at
        self.marks["keyframe"] = self.video.first_keyframe_at
        return {name: (at - self.start) * 1000 for name, at in self.marks.items()}


async def yitang_join(url: str, token: str) -> dict[str, float]:
    """Socket.IO connect (RoomClient, real token) to the first keyframe packet after SRTP."""
    joining = JoiningSubscriber()
    client = RoomClient(url, token)

    async def on_offer(payload: dict[str, Any]) -> None:
        answer = await joining.answer(payload["sdp"])
        await client.call("subscriber_answer", {"sdp": answer, "offer_id": payload.get("offer_id")})
        joining.mark("answer_acked")

    client.on("subscriber_offer", on_offer)
    try:
        await client.connect()
        joining.mark("joined")
        if client.socket_connected_at is not None:
            joining.marks["socket"] = client.socket_connected_at
        return await joining.first_keyframe()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)
        await joining.pc.close()


async def janus_join(janus: JanusSession, feed: int) -> dict[str, float]:
    """Janus ``attach`` (on an open session) to the first keyframe packet after SRTP."""
    joining = JoiningSubscriber()
    try:
        handle = await janus.attach()
        joining.mark("attached")
        body = {"request": "join", "ptype": "subscriber", "room": JANUS_ROOM,
                "streams": [{"feed": feed}]}  # fmt: skip
        event = await janus.message(handle, body)
        answer = await joining.answer(event["jsep"]["sdp"])
        jsep = {"type": "answer", "sdp": answer, "trickle": False}
        await janus.message(handle, {"request": "start"}, jsep)
        joining.mark("answer_acked")
        return await joining.first_keyframe()
    finally:
        await joining.pc.close()  # Janus hangs up the handle when DTLS closes


def summarize_joins(samples: list[dict[str, float]], phases: tuple[str, ...]) -> dict[str, Any]:
    """Median and p90 of the total; per milestone, the median time it was reached (ms).

    Milestones overlap (the server starts ICE before it acknowledges the answer), so
    they are given as times from the start, not as durations that add up.
    """
    totals = sorted(s["keyframe"] for s in samples)
    reached = {
        phase: statistics.median(values)
        for phase in phases
        for values in [[s[phase] for s in samples if phase in s]]
        if values
    }
    return {
        "joins": len(totals),
        "median": statistics.median(totals) if totals else float("nan"),
        "p90": totals[min(len(totals) - 1, int(0.9 * len(totals)))] if totals else float("nan"),
        "at": dict(sorted(reached.items(), key=lambda item: item[1])),
    }


async def run_yitang_joins(server: YitangServer, clip: DualClip, joins: int) -> dict[str, Any]:
    """A publisher sends; ``joins`` observers join one after another (one warm-up first)."""
    identities = [("publisher", "member")] + [(f"j{i}", "observer") for i in range(joins + 1)]
    tokens = await server.room_with_tokens(identities)
    processes = Processes()
    try:
        publisher = processes.peer("publisher", yitang_signaling(server.url, tokens[0]), clip)
        await asyncio.to_thread(
            wait_for, lambda: ask(publisher, {"cmd": "status"})["sent"] > FPS, SETUP_TIMEOUT,
            "the publisher to send",
        )  # fmt: skip
        await yitang_join(server.url, tokens[1])  # warm-up, not counted
        samples = []
        for token in tokens[2:]:
            await asyncio.sleep(JOIN_SPACING)
            samples.append(await yitang_join(server.url, token))
    finally:
        await asyncio.to_thread(processes.stop)
    return summarize_joins(samples, YITANG_PHASES)


async def run_janus_joins(janus: JanusProcess, clip: DualClip, joins: int) -> dict[str, Any]:
    """A publisher sends through the proxy; ``joins`` subscribers attach one after another."""
    processes = Processes()
    ours, theirs = processes.ctx.Pipe()
    try:
        processes.janus_proxy(janus.url, [ours])
        publisher = processes.peer("publisher", {"kind": "pipe", "conn": theirs}, clip)
        await asyncio.to_thread(
            wait_for, lambda: ask(publisher, {"cmd": "status"})["sent"] > FPS, SETUP_TIMEOUT,
            "the publisher to send",
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            session = JanusSession(http, janus.url)
            await session.create()
            try:
                feed = await _janus_feed(session)
                await janus_join(session, feed)  # warm-up, not counted
                samples = []
                for _ in range(joins):
                    await asyncio.sleep(JOIN_SPACING)
                    samples.append(await janus_join(session, feed))
            finally:
                await session.close()
    finally:
        await asyncio.to_thread(processes.stop)
    return summarize_joins(samples, JANUS_PHASES)


async def _janus_feed(session: JanusSession) -> int:
    handle = await session.attach()
    for _ in range(int(SETUP_TIMEOUT / 0.2)):
        data = await session.request(handle, {"request": "listparticipants", "room": JANUS_ROOM})
        feeds = [p["id"] for p in data.get("participants", []) if p.get("publisher")]
        if feeds:
            return int(feeds[0])
        await asyncio.sleep(0.2)  # Janus lists the feed once the publisher's media is up
    raise TimeoutError("the publisher's feed never appeared in Janus")


# --- The benchmark -----------------------------------------------------------------------


def yitang_signaling(url: str, token: str) -> dict[str, Any]:
    """A peer that signals through Yitang's Socket.IO with ``token``."""
    return {"kind": "yitang", "url": url, "token": token}


def packets_through_yitang(
    server: YitangServer, subscribers: int, seconds: float, clip: DualClip
) -> dict[str, Any]:
    """Per-packet latency through the Yitang server (a new room)."""
    identities = [("publisher", "member")] + [(f"s{i}", "observer") for i in range(subscribers)]
    tokens = asyncio.run(server.room_with_tokens(identities))

    def signaling(_: Processes, n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return yitang_signaling(server.url, tokens[0]), [
            yitang_signaling(server.url, t) for t in tokens[1:]
        ]

    return measure_packets(signaling, subscribers, seconds, clip)


def packets_through_janus(
    shim: Path, stock: bool, cpu: int | None, subscribers: int, seconds: float, clip: DualClip
) -> dict[str, Any]:
    """Per-packet latency through a fresh Janus VideoRoom (room 1234)."""
    janus = JanusProcess(one_loop=not stock, cpu=cpu)
    janus.start(shim)
    try:

        def signaling(processes: Processes, n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            pairs = [processes.ctx.Pipe() for _ in range(n + 1)]
            processes.janus_proxy(janus.url, [ours for ours, _ in pairs])
            peers = [{"kind": "pipe", "conn": theirs} for _, theirs in pairs]
            return peers[0], peers[1:]

        return measure_packets(signaling, subscribers, seconds, clip)
    finally:
        janus.stop()


def packets_direct(seconds: float, clip: DualClip) -> dict[str, Any]:
    """The baseline: the publisher's connection straight to one subscriber's."""

    def signaling(processes: Processes, n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        publisher_end, subscriber_end = processes.ctx.Pipe()
        return {"kind": "pipe", "conn": publisher_end}, [{"kind": "pipe", "conn": subscriber_end}]

    return measure_packets(signaling, 1, seconds, clip)


def attempt(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A measurement's result, or {"error": ...}: one failed run does not lose the others."""
    try:
        return measure()
    except Exception as exc:
        print(f"{what} failed: {exc!r}", file=sys.stderr)
        return {"error": repr(exc)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement the options ask for; the report."""
    modes = args.modes.split(",")
    counts = [int(n) for n in args.subscribers.split(",")]
    clip = encode_dual_clip()
    packets: dict[str, dict[int, dict[str, Any]]] = {}
    joins: dict[str, dict[str, Any]] = {}
    if "direct" in modes:
        packets["direct"] = {1: attempt("direct", lambda: packets_direct(args.seconds, clip))}
    if "yitang" in modes:
        server = YitangServer(args.cpu)
        server.start()
        try:
            packets["yitang"] = {
                n: attempt(
                    f"yitang N={n}",
                    lambda n=n: packets_through_yitang(server, n, args.seconds, clip),
                )
                for n in counts
            }
            if args.joins:
                joins["yitang"] = attempt(
                    "yitang joins", lambda: asyncio.run(run_yitang_joins(server, clip, args.joins))
                )
        finally:
            server.stop()
    if "janus" in modes:
        shim = ensure_janus()
        packets["janus"] = {
            n: attempt(
                f"janus N={n}",
                lambda n=n: packets_through_janus(
                    shim, args.janus_stock, args.cpu, n, args.seconds, clip
                ),
            )
            for n in counts
        }
        if args.joins:
            janus = JanusProcess(one_loop=not args.janus_stock, cpu=args.cpu)
            janus.start(shim)
            try:
                joins["janus"] = attempt(
                    "janus joins", lambda: asyncio.run(run_janus_joins(janus, clip, args.joins))
                )
            finally:
                janus.stop()
    return {
        "machine": machine(),
        "packets": {m: {str(n): r for n, r in by_n.items()} for m, by_n in packets.items()},
        "added": added_latency(packets),
        "joins": joins,
    }


def added_latency(packets: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per server and N: the percentiles minus the direct baseline's (ms)."""
    base = packets.get("direct", {}).get(1)
    if base is None or "error" in base:
        return {}
    return {
        mode: {
            str(n): {q: result[q] - base[q] for q in ("p50", "p99", "max")}
            for n, result in by_n.items()
            if "error" not in result
        }
        for mode, by_n in packets.items()
        if mode != "direct"
    }


def machine() -> str:
    """CPU model and count: numbers mean little without them."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "—"
    return f"{a / b:.2f}"


def print_report(report: dict[str, Any]) -> None:
    """The tables for people."""
    print(f"Machine: {report['machine']}")
    print("\nPer-packet latency, ms (publisher before SRTP -> subscriber after SRTP)")
    print(f"{'server':8} {'N':>3} {'packets':>8} {'p50':>7} {'p99':>7} {'max':>7}"
          f" {'+p50':>7} {'+p99':>7} {'+max':>7} {'delivered':>9}")  # fmt: skip
    for mode, by_n in report["packets"].items():
        for n, r in by_n.items():
            if "error" in r:
                print(f"{mode:8} {n:>3} failed: {r['error']}")
                continue
            add = report["added"].get(mode, {}).get(n, {})
            extra = " ".join(
                f"{add[q]:7.2f}" if q in add else f"{'':7}" for q in ("p50", "p99", "max")
            )
            print(f"{mode:8} {n:>3} {r['packets']:8d} {r['p50']:7.2f} {r['p99']:7.2f}"
                  f" {r['max']:7.2f} {extra} {r.get('delivered', float('nan')):9.0%}")  # fmt: skip
    added = report["added"]
    if "yitang" in added and "janus" in added:
        for n in added["yitang"]:
            if n in added["janus"]:
                ours, theirs = added["yitang"][n]["p99"], added["janus"][n]["p99"]
                print(f"N={n}: added p99 Yitang {ours:.2f} ms, Janus {theirs:.2f} ms,"
                      f" ratio {_ratio(ours, theirs)}")  # fmt: skip
    joins = report["joins"]
    if joins:
        print("\nJoin to the first keyframe packet after SRTP, ms")
        for mode, j in joins.items():
            if "error" in j:
                print(f"{mode:8} failed: {j['error']}")
                continue
            steps = ", ".join(f"{k} {v:.0f}" for k, v in j["at"].items())
            print(f"{mode:8} median {j['median']:7.1f}  p90 {j['p90']:7.1f}  ({j['joins']} joins)")
            print(f"{'':8} reached at (median ms): {steps}")
        if all("median" in joins.get(m, {}) for m in ("yitang", "janus")):
            ratio = _ratio(joins["yitang"]["median"], joins["janus"]["median"])
            print(f"Yitang/Janus median: {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="direct,yitang,janus", help="of direct,yitang,janus")
    parser.add_argument("--subscribers", default="1,4,8", help="subscriber counts (comma list)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    parser.add_argument("--joins", type=int, default=20, help="joins timed per server (0: none)")
    parser.add_argument("--janus-stock", action="store_true", help="Janus's default loops")
    parser.add_argument("--cpu", type=int, default=None, help="pin the servers to this CPU")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    modes = set(args.modes.split(","))
    if not modes <= {"direct", "yitang", "janus"} or not 0 < args.seconds <= 600:
        parser.error("modes: direct,yitang,janus; seconds: up to 600")
    if not 0 <= args.joins <= 200:
        parser.error("joins: 0 to 200")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
