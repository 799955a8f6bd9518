"""Browser-test fixtures: Debian's Chromium driven by Playwright against an in-process server.

The `server` fixture (tests/conftest.py) runs Yitang on 127.0.0.1 with a real Redis. Chromium
uses fake camera/microphone devices and may only reach loopback. A missing
/usr/bin/chromium is a failure, never a skip: run scripts/ensure-chromium.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    PageFactory,
    Participants,
    write_tone,
)
from tests.helpers import ServerHandle

expect.set_options(timeout=WAIT_MS)


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
            await instance.close()


@pytest.fixture
async def pages(browser: Browser, server: ServerHandle) -> AsyncIterator[PageFactory]:
    """Opens pages in separate browser contexts (one per participant); checks for JS errors."""
    factory = PageFactory(browser, server)
    try:
        yield factory
    finally:
        await factory.close()
    factory.assert_no_page_errors()


@pytest.fixture
async def room(server: ServerHandle) -> Participants:
    """The standard four-level room with a host, two members and an observer invited."""
    return await Participants.invite(server)
