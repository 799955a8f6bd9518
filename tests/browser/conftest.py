"""Browser-test fixtures: Debian's Chromium driven by Playwright against a Yitang process.

The `server` fixture here runs `yitang serve` in a process of its own on 127.0.0.1 with
the test Redis: its SFU (DTLS, SRTP, forwarding for four browsers) never competes with
the test's own event loop, which drives Playwright, so a busy machine slows both but
starves neither. Chromium uses fake camera/microphone devices and may only reach
loopback. A missing /usr/bin/chromium is a failure, never a skip: run
scripts/ensure-chromium.

One Chromium serves every browser test (launching one costs about as much as a short
test): each test opens its pages in browser contexts of their own (own storage, own
cookies), closed when it ends. Playwright's objects belong to the event loop that made
them, so the tests of this folder and their async fixtures run in one event loop for the
session: every async fixture here is `@pytest_asyncio.fixture(loop_scope="session")`
(a fixture in another loop fails at once: "attached to a different loop"), and the tasks a
test leaves behind are cancelled when it ends, as closing its own loop used to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Error, Playwright, async_playwright, expect

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


HERE = Path(__file__).resolve().parent
#: The event loop every test of this folder, and each of its async fixtures, runs in.
LOOP = "session"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's tests in the session's event loop (the shared Chromium's)."""
    for item in items:
        if HERE in item.path.resolve().parents and item.get_closest_marker("asyncio"):
            item.add_marker(pytest.mark.asyncio(loop_scope=LOOP), append=False)


@pytest_asyncio.fixture(autouse=True, loop_scope=LOOP)
async def tasks_end_with_the_test() -> AsyncIterator[None]:
    """Cancel the tasks a test started and left running (its own event loop's closing did
    that when each test had one), so none runs on into the next test. Playwright's own
    tasks (the shared Chromium's connection) are left alone."""
    before = asyncio.all_tasks()
    yield
    left = [
        task
        for task in asyncio.all_tasks() - before
        if task is not asyncio.current_task() and not _playwrights(task)
    ]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=10)


def _playwrights(task: asyncio.Task[object]) -> bool:
    """Whether Playwright's own code started the task (not a test's handler it runs)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}playwright{os.sep}" in code.co_filename


@pytest_asyncio.fixture(loop_scope=LOOP)
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on an empty database (tests/conftest.py's, in this folder's event loop)."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope=LOOP)
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


@pytest_asyncio.fixture(scope="session", loop_scope=LOOP)
async def playwright() -> AsyncIterator[Playwright]:
    """Playwright's driver, for the session."""
    async with async_playwright() as driver:
        yield driver


class SharedChromium:
    """The session's headless Chromium, launched when a test first needs it, and again if
    it went away (a crash in one test does not fail the ones after it)."""

    def __init__(self, playwright: Playwright, fake_microphone: Path) -> None:
        self.playwright = playwright
        self.fake_microphone = fake_microphone
        self.instance: Browser | None = None

    async def get(self) -> Browser:
        """The running Chromium."""
        if self.instance is None or not self.instance.is_connected():
            self.instance = await self.playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={self.fake_microphone}"],
                headless=True,
            )
        return self.instance

    async def close(self) -> None:
        """Close it; one that stopped answering must not hang the run."""
        if self.instance is None:
            return
        try:
            async with asyncio.timeout(30):
                await self.instance.close()
        except TimeoutError:
            pytest.fail("Chromium did not close within 30 s", pytrace=False)


@pytest_asyncio.fixture(scope="session", loop_scope=LOOP)
async def chromium(playwright: Playwright, fake_microphone: Path) -> AsyncIterator[SharedChromium]:
    """The session's Chromium (see SharedChromium)."""
    shared = SharedChromium(playwright, fake_microphone)
    try:
        yield shared
    finally:
        await shared.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def browser(chromium: SharedChromium) -> AsyncIterator[Browser]:
    """A headless Chromium for one test: the session's, with no context left open by an
    earlier test; the test's contexts are closed when it ends."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Install it with scripts/ensure-chromium (as root), then run the tests again.",
            pytrace=False,
        )
    instance = await chromium.get()
    yield instance
    for context in instance.contexts:
        with contextlib.suppress(Error):
            await context.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def pages(browser: Browser, server: ApiHandle) -> AsyncIterator[PageFactory]:
    """Opens pages in separate browser contexts (one per participant); checks for JS errors."""
    factory = PageFactory(browser, server)
    try:
        yield factory
    finally:
        await factory.close()
    factory.assert_no_page_errors()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def room(server: ApiHandle) -> Participants:
    """The standard four-level room with a host, two members and an observer invited."""
    return await Participants.invite(server)
