"""The README's first command works on a clean clone: install, start, seed, print the links.

The second command (`scripts/test`) is what CI runs on a clean checkout, so CI
itself shows it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.processes import REPO

SEEDED_PARTICIPANTS = 11


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: the embedded Valkey's unix socket is under the
    clone's data/, a socket path holds at most 107 bytes, and pytest's per-worker
    `tmp_path` can be long enough to pass that (the server refuses it, saying so)."""
    path = Path(tempfile.mkdtemp(prefix="yitang-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(420)  # creating .venv and installing takes minutes on a busy machine
async def test_scripts_serve_on_a_clean_clone(short_tmp: Path) -> None:
    clone = short_tmp / "clone"
    cloning = await asyncio.create_subprocess_exec("git", "clone", "--quiet", str(REPO), str(clone))
    assert await cloning.wait() == 0
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        "scripts/serve", "--port", str(port),
        "--ice-address", "127.0.0.1", "--ice-remote-allow", "127.0.0.0/8", cwd=clone,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(300):  # includes creating .venv and installing
            while sum("/join?token=" in line for line in lines) < SEEDED_PARTICIPANTS:
                line = (await process.stdout.readline()).decode()
                assert line, "scripts/serve exited early:\n" + "".join(lines)
                lines.append(line)
        output = "".join(lines)
        key = re.search(r"Admin API key: (\S+)", output)
        assert key is not None, output
        assert (clone / "data" / "api-key").read_text().strip() == key.group(1)
        assert f"running at http://127.0.0.1:{port}" in output
        link = re.search(r"周明远（主持人）: (\S+)", output)
        assert link is not None, "the host's join link is printed"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            async with http.get(link.group(1)) as response:
                assert response.status == 200
            headers = {"Authorization": f"Bearer {key.group(1)}"}
            async with http.get(f"http://127.0.0.1:{port}/api/rooms", headers=headers) as response:
                rooms = (await response.json())["rooms"]
        assert [row["room"]["id"] for row in rooms] == ["zhuzhou-qingshuitang"]
        assert [v["level"] for v in rooms[0]["room"]["venues"]] == [
            "national", "provincial", "city", "county",
        ]  # fmt: skip
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == 0, "SIGTERM stops the server cleanly"
