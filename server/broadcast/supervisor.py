"""One room's broadcast worker process: start, feed, restart (bounded), stop.

The worker is a child of the room's owner node, joined to it by a unix
SEQPACKET socket pair (message boundaries kept; the worker sees end-of-file
when the node goes away). Sending never blocks the node: when the worker
falls behind and its socket buffer is full, packets are dropped and counted,
and the worker asks for a keyframe to recover.

A worker that exits on its own is started again, at most ``max_restarts``
times per ``restart_window`` seconds; past that the broadcast is reported
failed and the session goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import wire

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerSupervisor:
    """Runs the worker of one room (see the module docstring)."""

    def __init__(
        self,
        room_id: str,
        directory: Path,
        *,
        on_keyframe: Callable[[int], None],
        on_failed: Callable[[str], None],
        worker_args: tuple[str, ...] = (),
        max_restarts: int = 3,
        restart_window: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.room_id = room_id
        self.directory = directory
        self._on_keyframe = on_keyframe
        self._on_failed = on_failed
        self._worker_args = worker_args
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.stop_timeout = stop_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._watch: asyncio.Task[None] | None = None
        self._restarts: list[float] = []
        self._stopping = False
        #: The last programme sent (sent again to a restarted worker).
        self.programme: bytes | None = None
        #: The worker's last progress report (frames encoded, its CPU seconds).
        self.report: dict[str, Any] = {}
        self.failed = False
        self.dropped = 0
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running worker's process id."""
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the worker process (the directory is emptied first: a new broadcast)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.iterdir():
            if old.is_file():
                old.unlink(missing_ok=True)
        await self._spawn()

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wire.SOCKET_BUFFER)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.broadcast.worker",
                "--fd",
                str(theirs.fileno()),
                "--dir",
                str(self.directory),
                *self._worker_args,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # Where this `server` package is: the worker runs the same code as the node,
                # whatever the node's working directory.
                cwd=_PACKAGE_ROOT,
            )
        finally:
            theirs.close()
        if self._stopping:
            # stop() ran while the process was being created (it saw no process): this one
            # must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
            ours.close()
            return
        self.starts += 1
        self._sock = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)
        if self.programme is not None:
            self.send(self.programme)
        self._watch = asyncio.create_task(
            self._wait(self.process), name=f"broadcast {self.room_id}"
        )
        logger.info("broadcast worker for %s started (pid %d)", self.room_id, self.process.pid)

    def send(self, datagram: bytes) -> None:
        """Send one datagram to the worker without blocking (dropped if its buffer is full)."""
        if datagram[:1] == wire.STATE:
            self.programme = datagram
        if self._sock is None:
            return
        try:
            self._sock.send(datagram)
        except BlockingIOError:
            self.dropped += 1
        except OSError:
            pass  # the worker is gone; its watcher restarts it

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(100):
            try:
                datagram = sock.recv(wire.MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                datagram = b""
            if not datagram:
                self._close_socket()
                return
            kind = datagram[:1]
            with contextlib.suppress(ValueError, IndexError):
                if kind == wire.KEYFRAME:
                    self._on_keyframe(datagram[1])
                elif kind == wire.REPORT:
                    self.report = wire.unpack_json(datagram)

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    async def _wait(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._stopping:
            return
        self._close_socket()
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < self.restart_window]
        logger.warning("broadcast worker for %s exited with %s", self.room_id, code)
        if len(self._restarts) >= self.max_restarts:
            self.failed = True
            self.process = None
            self._on_failed(f"the broadcast worker exited {len(self._restarts) + 1} times")
            return
        self._restarts.append(now)
        await self._spawn()

    async def stop(self) -> None:
        """Stop the worker: SIGTERM (it closes the playlist), SIGKILL after the timeout."""
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._close_socket()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
