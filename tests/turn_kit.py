"""A real coturn (Debian's `turnserver`, provisioned by scripts/ensure-coturn) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.processes import START_TIMEOUT


@dataclass(frozen=True)
class Coturn:
    """A running turnserver with `use-auth-secret`."""

    port: int
    secret: str
    log: Path

    def urls(self) -> list[str]:
        """Its TURN URLs over UDP and TCP, as `yitang serve --turn-url` takes them."""
        return [
            f"turn:127.0.0.1:{self.port}?transport=udp",
            f"turn:127.0.0.1:{self.port}?transport=tcp",
        ]

    def serve_args(self) -> list[str]:
        """The `yitang serve` flags that hand it to participants."""
        args = ["--turn-secret", self.secret]
        for url in self.urls():
            args += ["--turn-url", url]
        return args


def _relay_range_start(port: int) -> int:
    """The first of 100 relay ports for a coturn listening on `port`: a range of its own,
    away from other tests' ports. Under pytest-xdist each worker (gw0, gw1, ...) has its own
    share of the ranges, so two coturns running at once on two workers never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = 200 // max(workers, 1)
    return 40000 + (int(worker) % max(workers, 1) * share + port % share) * 100


@contextlib.asynccontextmanager
async def coturn(
    directory: Path, secret: str = "test-turn-secret", relay_ip: str = "127.0.0.1"
) -> AsyncIterator[Coturn]:
    """Start coturn on 127.0.0.1 (relaying to loopback peers: the SFU is on 127.0.0.1).

    `relay_ip` is the address its relayed candidates have (another loopback address lets a
    server accept only what comes through the relay: a venue whose UDP is blocked)."""
    binary = shutil.which("turnserver")
    assert binary, "turnserver is missing: scripts/test runs scripts/ensure-coturn"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    relay_low = _relay_range_start(port)
    log = directory / "turnserver.log"
    process = await asyncio.create_subprocess_exec(
        binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
        "--listening-ip", "127.0.0.1", "--relay-ip", relay_ip, "--listening-port", str(port),
        "--min-port", str(relay_low), "--max-port", str(relay_low + 99),
        "--use-auth-secret", "--static-auth-secret", secret, "--realm", "yitang.test",
        "--allow-loopback-peers", "--log-file", str(log), "--simple-log", "--verbose",
        "--pidfile", str(directory / "turnserver.pid"), "--userdb", str(directory / "turndb"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(
                        f"turnserver exited: {log.read_text() if log.exists() else ''}"
                    )
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)  # a server binary gives no readiness signal
        yield Coturn(port, secret, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
