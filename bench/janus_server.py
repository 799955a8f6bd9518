"""The Janus baseline of bench/forwarding.py: Janus 1.1.2 VideoRoom behind the bench's pipes.

:class:`JanusProcess` starts Debian's Janus (``scripts/ensure-janus`` installs
it and builds ``bench/janus/loopback_shim.c``) with a private configuration:
only the VideoRoom plugin and the HTTP transport, ICE on ``lo`` only
(``ice_enforce_list = "lo"``; the LD_PRELOAD shim clears IFF_LOOPBACK so that
libnice gathers 127.0.0.1), and either one event loop for all handles
(``event_loops = 1``, "one loop") or Janus's default of one loop thread per
handle ("stock").

:func:`run_janus_proxy` is the bench's "server process" for Janus: it speaks
the same pipe protocol to the bench clients as the Yitang server does and
translates it into Janus's HTTP API (publisher: ``joinandconfigure`` with the
client's offer; subscriber: ``join`` as subscriber, Janus offers, ``start``
with the client's answer). Its own CPU is not measured: only Janus's is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from bench_client import PipeReader

ROOT = Path(__file__).resolve().parent.parent
JANUS = "/usr/bin/janus"
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM = 1234
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 20.0


def ensure_janus() -> Path:
    """Install Janus if needed (scripts/ensure-janus) and return the shim's path."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "ensure-janus")], check=True, capture_output=True, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JanusProcess:
    """One Janus process with a throw-away configuration (``one_loop``: event_loops = 1)."""

    def __init__(self, *, one_loop: bool, cpu: int | None) -> None:
        self.one_loop = one_loop
        self.cpu = cpu
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="yitang-bench-janus-"))

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}/janus"

    def start(self, shim: Path) -> None:
        """Write the configuration, start Janus, wait until its HTTP API answers."""
        configs = self._dir / "etc"
        for name in ("etc", "plugins", "transports", "events", "loggers"):
            (self._dir / name).mkdir()
        # Only what the benchmark uses: faster start, no other plugin's threads.
        (self._dir / "plugins" / "libjanus_videoroom.so").symlink_to(
            JANUS_LIB / "plugins" / "libjanus_videoroom.so"
        )
        (self._dir / "transports" / "libjanus_http.so").symlink_to(
            JANUS_LIB / "transports" / "libjanus_http.so"
        )
        event_loops = "event_loops = 1\n" if self.one_loop else ""
        (configs / "janus.jcfg").write_text(
            "general: {\n"
            f'  configs_folder = "{configs}"\n'
            f'  plugins_folder = "{self._dir / "plugins"}"\n'
            f'  transports_folder = "{self._dir / "transports"}"\n'
            f'  events_folder = "{self._dir / "events"}"\n'
            f'  loggers_folder = "{self._dir / "loggers"}"\n'
            "  debug_level = 3\n"
            f'  admin_secret = "{secrets.token_hex(8)}"\n'
            f"  {event_loops}"
            "}\n"
            "media: { }\n"
            'nat: {\n  ice_enforce_list = "lo"\n  ignore_mdns = true\n}\n'
            "plugins: { }\ntransports: { }\nevents: { }\nloggers: { }\n"
        )
        (configs / "janus.transport.http.jcfg").write_text(
            'general: {\n  json = "compact"\n  base_path = "/janus"\n  http = true\n'
            f'  port = {self.port}\n  ip = "127.0.0.1"\n  https = false\n}}\n'
            "admin: {\n  admin_http = false\n}\n"
        )
        (configs / "janus.plugin.videoroom.jcfg").write_text("general: { }\n")
        command = [JANUS, "--configs-folder", str(configs), "--config", str(configs / "janus.jcfg")]
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        env = dict(os.environ, LD_PRELOAD=str(shim))
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=(self._dir / "janus.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Janus exited: see {self._dir / 'janus.log'}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            if time.monotonic() > deadline:
                raise TimeoutError("Janus did not open its HTTP port")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        """The Janus process id (for CPU accounting)."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Stop Janus (SIGTERM, then SIGKILL) and remove its configuration."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)


class JanusSession:
    """A Janus session with long-polled events, and VideoRoom handles on it."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url
        self.session_id = 0
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"transaction": secrets.token_hex(6), **body}
        async with self._http.post(
            f"{self._url}{path}", json=body, timeout=aiohttp.ClientTimeout(REQUEST_TIMEOUT)
        ) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus error: {reply}")
        return reply

    async def create(self) -> None:
        """Create the session and start long-polling its events."""
        reply = await self._post("", {"janus": "create"})
        self.session_id = reply["data"]["id"]
        self._poller = asyncio.create_task(self._poll())

    async def attach(self) -> int:
        """Attach a VideoRoom handle; return its id."""
        reply = await self._post(
            f"/{self.session_id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        handle: int = reply["data"]["id"]
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (e.g. ``create``): the plugin's reply data."""
        reply = await self._post(f"/{self.session_id}/{handle}", {"janus": "message", "body": body})
        data: dict[str, Any] = reply["plugindata"]["data"]
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An asynchronous plugin request: wait for its event (with any JSEP)."""
        transaction = secrets.token_hex(6)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[transaction] = waiter
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        async with self._http.post(
            f"{self._url}/{self.session_id}/{handle}",
            json=message,
            timeout=aiohttp.ClientTimeout(REQUEST_TIMEOUT),
        ) as response:
            ack = await response.json(content_type=None)
        if ack.get("janus") == "error":
            raise RuntimeError(f"Janus error: {ack}")
        event = await asyncio.wait_for(waiter, REQUEST_TIMEOUT)
        if "jsep" not in event and "error" in event.get("plugindata", {}).get("data", {}):
            raise RuntimeError(f"VideoRoom error: {event['plugindata']['data']}")
        return event

    async def _poll(self) -> None:
        while True:
            try:
                async with self._http.get(
                    f"{self._url}/{self.session_id}?maxev=10",
                    timeout=aiohttp.ClientTimeout(60),
                ) as response:
                    events = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                waiter = self._waiters.pop(event.get("transaction", ""), None)
                if waiter is not None and not waiter.done() and event.get("janus") == "event":
                    waiter.set_result(event)

    async def close(self) -> None:
        """Stop polling (Janus drops the session when the process stops)."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)


async def _proxy_main(url: str, conns: list[Connection], control: Connection) -> None:
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    conn_by_pid = {f"c{i}": conn for i, conn in enumerate(conns)}
    handles: dict[str, int] = {}
    publisher_ready = asyncio.Event()
    feed: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, url)
        await janus.create()
        admin = await janus.attach()
        await janus.request(
            admin,
            {
                "request": "create",
                "room": ROOM,
                "publishers": 4,
                "bitrate": 0,  # no REMB cap: the publisher's encoder runs as with Yitang
                "videocodec": "vp8",
                "audiocodec": "opus",
                "audiolevel_ext": True,
                "audiolevel_event": False,
                "notify_joining": False,
            },
        )

        async def handle(pid: str, message: dict[str, Any]) -> None:
            conn = conn_by_pid[pid]
            kind = message["type"]
            if kind == "join" and message["role"] != "publisher":
                await publisher_ready.wait()
                handles[pid] = await janus.attach()
                # Janus knows the feed only once the publisher's PeerConnection is up.
                for _ in range(200):
                    try:
                        event = await janus.message(
                            handles[pid],
                            {
                                "request": "join",
                                "ptype": "subscriber",
                                "room": ROOM,
                                "streams": [{"feed": feed["id"]}],
                            },
                        )
                        break
                    except RuntimeError as exc:
                        if "No such feed" not in str(exc):
                            raise
                        await asyncio.sleep(0.1)
                else:
                    raise TimeoutError("the publisher's feed never appeared in Janus")
                conn.send({"type": "offer", "sdp": event["jsep"]["sdp"]})
            elif kind == "offer":
                handles[pid] = await janus.attach()
                event = await janus.message(
                    handles[pid],
                    {"request": "joinandconfigure", "ptype": "publisher", "room": ROOM},
                    {"type": "offer", "sdp": message["sdp"], "trickle": False},
                )
                feed["id"] = event["plugindata"]["data"]["id"]
                conn.send({"type": "answer", "sdp": event["jsep"]["sdp"]})
                publisher_ready.set()
            elif kind == "answer":
                await janus.message(
                    handles[pid],
                    {"request": "start"},
                    {"type": "answer", "sdp": message["sdp"], "trickle": False},
                )

        def dispatcher(pid: str) -> Any:
            def on_message(message: dict[str, Any]) -> None:
                task = asyncio.ensure_future(handle(pid, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            return on_message

        readers = [PipeReader(conn, dispatcher(pid)) for pid, conn in conn_by_pid.items()]

        def on_control(message: dict[str, Any]) -> None:
            if message["cmd"] == "stats":
                control.send({"plis": 0, "dropped": 0})
            elif message["cmd"] == "stop":
                stop.set()

        control_reader = PipeReader(control, on_control)
        await stop.wait()
        for reader in (*readers, control_reader):
            reader.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await janus.close()
    control.send({"stopped": True})


def run_janus_proxy(url: str, conns: list[Connection], control: Connection) -> None:
    """Process entry point: the pipe protocol of bench_client.py, served by Janus at ``url``."""
    asyncio.run(_proxy_main(url, conns, control))
