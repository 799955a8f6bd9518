"""Browser-test fixtures: Debian's Chromium driven by Playwright against a Yitang process.

The `server` fixture here runs `yitang serve` in a process of its own on 127.0.0.1 with
the test Redis: its SFU (DTLS, SRTP, forwarding for four browsers) never competes with
the test's own event loop, which drives Playwright, so a busy machine slows both but
starves neither. Chromium uses fake camera/microphone devices and may only reach
loopback. A missing /usr/bin/chromium is a failure, never a skip: run
scripts/ensure-chromium.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, async_playwright, expect

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    PageFactory,
    Participants,
    write_tone,
)
from tests.conftest import free_port
from tests.helpers import ApiHandle
from tests.processes import server_process

expect.set_options(timeout=WAIT_MS)


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ApiHandle]:
    """A Yitang node in a process of its own, on the test Redis."""
    async with (
        server_process(tmp_path / "data", free_port(), "--redis-url", redis_url) as node,
        aiohttp.ClientSession() as http,
    ):
        yield ApiHandle(node.base_url, node.api_key, http)


@pytest.fixture(scope="session")
def fake_microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WAV file Chromium loops as its fake microphone: a steady tone, so a participant
    with an open microphone is "speaking" (Chromium's own fake device only beeps briefly)."""
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    write_tone(path)
    return path


@pytest.fixture
async def browser(fake_microphone: Path) -> AsyncIterator[Browser]:
    """A headless Chromium for one test."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Install it with scripts/ensure-chromium (as root), then run the tests again.",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={fake_microphone}"],
            headless=True,
        )
        try:
            yield instance
        finally:
            # Closing a browser that stopped answering must not hang the run.
            try:
                async with asyncio.timeout(30):
                    await instance.close()
            except TimeoutError:
                pytest.fail("Chromium did not close within 30 s", pytrace=False)


@pytest.fixture
async def pages(browser: Browser, server: ApiHandle) -> AsyncIterator[PageFactory]:
    """Opens pages in separate browser contexts (one per participant); checks for JS errors."""
    factory = PageFactory(browser, server)
    try:
        yield factory
    finally:
        await factory.close()
    factory.assert_no_page_errors()


@pytest.fixture
async def room(server: ApiHandle) -> Participants:
    """The standard four-level room with a host, two members and an observer invited."""
    return await Participants.invite(server)
