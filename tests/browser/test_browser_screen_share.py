"""Screen sharing in the browser (zh and en): the floor holder shares a screen (a canvas
stream stands in for the display, which headless Chromium cannot capture); it takes every
spotlight with the sharer's camera in a corner; the host stops it; the turn's end ends it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import PageFactory, Participants, enter, open_tab, screenshot
from tests.helpers import ApiHandle, eventually

#: getDisplayMedia replaced by an animated canvas: a "slide" whose colour and number change.
FAKE_DISPLAY = """
navigator.mediaDevices.getDisplayMedia = async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 640;
  canvas.height = 360;
  const ctx = canvas.getContext("2d");
  let n = 0;
  setInterval(() => {
    n += 1;
    ctx.fillStyle = `hsl(${(n * 7) % 360}, 60%, 35%)`;
    ctx.fillRect(0, 0, 640, 360);
    ctx.fillStyle = "#fff";
    ctx.font = "40px sans-serif";
    ctx.fillText("清水塘新城规划 " + n, 40, 190);
  }, 66);
  return canvas.captureStream(15);
};
"""

TEXT = {"zh": {"sharing": "屏幕共享"}, "en": {"sharing": "Shared screen"}}


async def _shows_screen(page: Page, identity: str) -> None:
    spotlight = page.locator("#spotlight")
    await expect(spotlight).to_have_attribute("data-screen", "true")
    await expect(spotlight).to_have_attribute("data-identity", identity)
    await expect(spotlight.locator("video")).to_have_attribute("data-playing", "true")
    await page.wait_for_function(
        "() => Number(document.querySelector('#spotlight video').dataset.frames) > 10"
    )
    # The sharer's camera is in the corner, a different track from the screen.
    await expect(page.locator("#screen-pip")).to_be_visible()
    different = await page.evaluate(
        """() => {
          const screen = document.querySelector('#spotlight video').srcObject;
          const camera = document.querySelector('#screen-pip video').srcObject;
          return Boolean(screen && camera) &&
            screen.getVideoTracks()[0].id !== camera.getVideoTracks()[0].id;
        }"""
    )
    assert different


async def _manifest(server: ApiHandle, recording_id: str) -> dict[str, Any]:
    """The recording's detail once its manifest is written (at stop)."""
    detail: dict[str, Any] = {}

    async def written() -> bool:
        nonlocal detail
        status, detail = await server.request("GET", f"/api/recordings/{recording_id}")
        return status == 200 and detail["manifest"] is not None

    await eventually(written, "the recording's manifest is written")
    return detail


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_floor_holder_shares_a_screen_into_every_spotlight(
    pages: PageFactory, room: Participants, server: ApiHandle, lang: str
) -> None:
    host = await pages.join(room.host, lang=lang)
    m2 = await pages.join(room.m2, lang=lang)
    page = await pages.new_page(lang=lang)
    await page.context.add_init_script(FAKE_DISPLAY)
    await page.goto(room.m1.url)
    await enter(page)
    m1 = page
    # Without the floor a member cannot share.
    await expect(m1.locator("#share-button")).to_be_hidden()
    await m1.wait_for_function("() => window.yitang.media.publishState === 'published'")
    await host.evaluate("() => window.yitang.call('grant_floor', {identity: 'm1'})")
    await host.wait_for_function("() => window.yitang.media.publishState === 'published'")
    recording = await host.evaluate(
        "() => window.yitang.call('start_recording', {}).then((ack) => ack.recording.id)"
    )
    await expect(m1.locator("#share-button")).to_be_visible()
    await m1.locator("#share-button").click()
    await expect(m1.locator("#share-button")).to_have_attribute("data-state", "on")
    for viewer in (host, m2):
        await _shows_screen(viewer, "m1")
        await expect(viewer.locator("#spotlight .tile-status")).to_have_text(TEXT[lang]["sharing"])
    await screenshot(m2, f"screen-share-{lang}")
    screen_track = await host.evaluate("() => window.yitang.store.live.screen.track")
    # Recorded like any track: a per-track file of its own in the archive.
    await m2.wait_for_function(
        "() => Number(document.querySelector('#spotlight video').dataset.frames) > 40"
    )
    await host.evaluate("() => window.yitang.call('stop_recording', {})")
    detail = await _manifest(server, recording)
    files = [f for f in detail["manifest"]["files"] if f["track_id"] == screen_track]
    assert len(files) == 1 and files[0]["participant"] == "m1" and files[0]["kind"] == "video"
    assert files[0]["frames"] > 0

    # The host stops it: everyone's stage goes back to the speaker's camera.
    await host.locator("#host-stop-share").click()
    for viewer in (host, m2, m1):
        await expect(viewer.locator("#spotlight")).to_have_attribute("data-screen", "false")
    await expect(m1.locator("#share-button")).to_have_attribute("data-state", "off")
    await expect(m2.locator("#spotlight")).to_have_attribute("data-identity", "m1")

    # Shared again (the same track, swapped in), then the turn ends: so does the share.
    await m1.locator("#share-button").click()
    await _shows_screen(m2, "m1")
    await host.evaluate("() => window.yitang.call('revoke_floor', {})")
    for viewer in (host, m2, m1):
        await expect(viewer.locator("#spotlight")).to_have_attribute("data-screen", "false")
    await expect(m1.locator("#share-button")).to_be_hidden()
    # Both ends are in the timeline (the archive's chapters): stopped, and the turn ended.
    await open_tab(m2, "chat")
    await expect(m2.locator('.chat-event[data-type="screen_share_started"]')).to_have_count(2)
    await expect(m2.locator('.chat-event[data-type="screen_share_stopped"]')).to_have_count(2)
