"""The archive page in headless Chromium: list, search, chapters that seek, a playing video,
download links. The recording is made without media (synthetic files) and rendered in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright, expect

from server.appkeys import RECORDING_SERVICE
from server.recording.compositor import RenderOptions, render_recording
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import ServerHandle
from tests.recording.recording_kit import build_session, recording_server

WAIT_MS = 15_000


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


@pytest.fixture
async def page(server: ServerHandle) -> AsyncIterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1000})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == []
        finally:
            await browser.close()


async def test_archive_lists_plays_by_chapter_and_offers_downloads(
    server: ServerHandle, page: Page, tmp_path: Path
) -> None:
    service = server.app[RECORDING_SERVICE]
    recording_id = "room-1-20261201-090000-abcd"
    folder = service.config.recordings_dir / recording_id
    build_session(folder, 6.0, recording_id)
    render_recording(folder, RenderOptions(width=640, height=360))
    assert [r.id for r in await service.recover()] == []  # indexes the finished folder
    assert await service.index.get(recording_id) is not None

    await page.goto(server.base_url + "/archive")
    await page.fill("#api-key", server.api_key)
    await page.click("#key-form button[type=submit]")
    row = page.locator(f'tr[data-recording-id="{recording_id}"]')
    await expect(row).to_have_attribute("data-state", "stopped", timeout=WAIT_MS)
    await expect(row).to_contain_text("清水塘新城建设专题协商会")
    await expect(row).to_contain_text("石峰区政协会场")

    # Search narrows the list, and clears back.
    await page.fill("#q", "没有这个会")
    await page.click("#search-button")
    await expect(page.locator("#recordings")).to_have_attribute("data-count", "0", timeout=WAIT_MS)
    await page.fill("#q", "新城")
    await page.fill("#speaker", "陈静怡")
    await page.click("#search-button")
    await expect(page.locator("#recordings")).to_have_attribute("data-count", "1", timeout=WAIT_MS)

    # Open it: chapters, participants, files, and a video that plays.
    await row.click()
    card = page.locator("#detail-card")
    await expect(card).to_have_attribute("data-recording-id", recording_id, timeout=WAIT_MS)
    chapters = page.locator("#chapters li")
    await expect(chapters).to_have_count(3)
    await expect(chapters.nth(1)).to_contain_text("陈静怡")
    await expect(page.locator("#participants li")).to_have_count(2)
    await expect(page.locator("#files-body tr")).to_have_count(4)
    await expect(page.locator("#render-status")).to_have_attribute("data-render-state", "done")
    await expect(row).to_have_attribute("data-render-state", "done")
    player = page.locator("#player")
    await expect(player).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    duration = float(await player.get_attribute("data-duration") or 0)
    assert abs(duration - 6.0) < 0.3

    speaker_chapter = chapters.nth(1)
    start = float(await speaker_chapter.get_attribute("data-start") or 0)
    await page.evaluate("document.getElementById('player').muted = true")
    await speaker_chapter.locator("button").click()
    # Once it plays inside the chapter, hold it there: the chapter lasts 2 s of playback and
    # its highlight is checked next, which on a busy machine can come after the chapter ended.
    await page.wait_for_function(
        "([start]) => { const v = document.getElementById('player');"
        " if (v.paused || v.currentTime <= start + 0.3 || v.readyState < 3) return false;"
        " v.pause(); return true; }",
        arg=[start],
        timeout=WAIT_MS,
    )
    await expect(speaker_chapter).to_have_attribute("data-active", "true")
    await page.screenshot(path=str(tmp_path / "archive.png"))

    # Download links carry the access token and fetch the original file.
    link = page.locator("#files-body a[data-download]").first
    href = await link.get_attribute("href")
    assert href is not None and "access=" in href and "download=1" in href
    name = await link.get_attribute("data-download")
    async with server.http.get(server.base_url + href) as response:
        assert response.status == 200
        assert await response.read() == (folder / str(name)).read_bytes()
