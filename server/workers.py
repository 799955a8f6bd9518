"""`yitang serve --workers N`: N node processes on one box, behind one port.

One Python process forwards media on one core; a box with more cores runs
more node processes. They are ordinary nodes of one deployment (each with its
own id, heartbeat and rooms; see docs/cluster.md), so nothing here is new
cluster logic: this module only starts, watches and stops them.

* The port: every node binds it with SO_REUSEPORT and the kernel spreads new
  connections over them. Clients use the websocket transport only (a long-poll
  session's requests could land on different processes); any node serves any
  socket, relaying to the room's owner, so where a socket lands does not matter.
* Rooms: placed on the least loaded node (server/cluster/placement.py), so a
  box with two busy rooms uses two cores.
* What the node processes share is set up once here: the embedded Valkey (when
  no `--redis-url` is given), the admin key and token secret files, and the
  render workers. The first node seeds the demo and prints the links.
* Faults: a node process that dies is started again (its rooms move to the
  others meanwhile, as after any node's death); one that keeps dying (more
  than `MAX_RESTARTS` within `RESTART_WINDOW`) stops the box with exit status
  1, for the process supervisor to act. The node processes get SIGTERM when
  this process dies (PR_SET_PDEATHSIG), so none is left holding the port.
* SIGTERM/SIGINT: every node drains (`--drain-seconds`), then this exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.credentials import load_api_key, load_token_secret
from server.recording.worker import worker_processes
from server.settings import Settings
from server.state.embedded import die_with_parent, embedded_redis

logger = logging.getLogger(__name__)

#: A node process that dies this often within the window makes the box give up.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Beyond the drain itself, how long a node process may take to exit after SIGTERM.
EXIT_GRACE = 15.0


def default_worker_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class BoxFailed(Exception):
    """The box cannot go on: its Valkey is gone for good, or a node process keeps dying."""


@dataclass
class _NodeProcess:
    index: int
    process: asyncio.subprocess.Process | None = None
    restarts: list[float] = field(default_factory=list)


class Box:
    """The node processes of one `yitang serve --workers N`, watched and restarted."""

    def __init__(self, settings: Settings, serve_args: Sequence[str], *, verbose: bool) -> None:
        self.settings = settings
        self.verbose = verbose
        #: The `serve` flags as given; each node gets them with its own overrides after.
        self.serve_args = list(serve_args)
        self._nodes = [_NodeProcess(index) for index in range(settings.workers)]
        self._stopping = False
        self._failed = asyncio.Event()
        self._failure = ""

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (then drain every node) or the box fails (BoxFailed)."""
        settings = self.settings
        # Created once here, so that the nodes never race to create them.
        load_api_key(settings.data_dir, settings.api_key)
        load_token_secret(settings.data_dir, settings.token_secret)
        async with contextlib.AsyncExitStack() as stack:
            redis_url = settings.redis_url
            if redis_url is None:
                redis_url = await stack.enter_async_context(
                    embedded_redis(settings.data_dir, on_give_up=self._give_up)
                )
            await stack.enter_async_context(worker_processes(settings.render_workers, redis_url))
            watchers = [
                asyncio.create_task(self._keep_running(node, redis_url), name=f"node {node.index}")
                for node in self._nodes
            ]
            waits = {asyncio.create_task(stop.wait()), asyncio.create_task(self._failed.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._stopping = True
                for waiting in waits:
                    waiting.cancel()
                await self._stop_nodes()
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
        if self._failed.is_set():
            raise BoxFailed(self._failure)

    def _give_up(self, reason: str) -> None:
        if not self._failed.is_set():
            self._failure = reason
            self._failed.set()

    def _command(self, node: _NodeProcess, redis_url: str) -> list[str]:
        # argparse keeps the last occurrence of a flag: the overrides win.
        overrides = [
            "--workers", "1",
            "--redis-url", redis_url,
            "--render-workers", "0",
        ]  # fmt: skip
        if self.settings.metrics_port:
            # The main port reaches any node: each serves its metrics on a port of its own.
            overrides += ["--metrics-port", str(self.settings.metrics_port + node.index)]
        if node.index == 0 and not node.restarts:
            overrides += ["--box-node", "first"]  # seeds the demo and prints the links, once
        else:
            overrides += ["--box-node", "other", "--seed", ""]
        top = ["--verbose"] if self.verbose else []
        return [sys.executable, "-m", "server", *top, "serve", *self.serve_args, *overrides]

    async def _keep_running(self, node: _NodeProcess, redis_url: str) -> None:
        while not self._stopping:
            node.process = await asyncio.create_subprocess_exec(
                *self._command(node, redis_url),
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            code = await node.process.wait()
            if self._stopping:
                return
            now = time.monotonic()
            node.restarts = [t for t in node.restarts if now - t < RESTART_WINDOW] + [now]
            if len(node.restarts) > MAX_RESTARTS:
                self._give_up(f"node process {node.index} keeps exiting (last status {code})")
                return
            # The first restart is quick; each more within the window waits twice as long.
            delay = min(2.0 ** (len(node.restarts) - 1), 30.0)
            logger.warning(
                "node process %d exited with %s; starting it again in %.0fs",
                node.index,
                code,
                delay,
            )
            await asyncio.sleep(delay)

    async def _stop_nodes(self) -> None:
        running = [n.process for n in self._nodes if n.process and n.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(
                    process.wait(), timeout=self.settings.drain_seconds + EXIT_GRACE
                )
            except TimeoutError:
                logger.warning("node process %d did not exit in time; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
