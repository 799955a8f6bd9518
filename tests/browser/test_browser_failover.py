"""The browser client survives its node dying, when that node also owned the room.

Two server processes on one Valkey: the page is served by node A and talks to
it, and A owns the room (the host joined first); an aiortc member is on node
B. A is killed: the page reconnects to B by itself (B is in the snapshot's
`nodes`), B takes the room over, and both directions of media are back.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.browser.support import DESKTOP, WAIT_MS, enter
from tests.cluster_kit import cluster

#: The issue's bound: everyone back, with media, this long after the owner died.
RECOVERY_SECONDS = 20.0
MORE_FRAMES = 15


async def _video_flowing(page: Page, identity: str, within_ms: float) -> None:
    start = await page.evaluate("id => window.yitang.media.framesDecoded(id)", identity)
    await page.wait_for_function(
        "async ([id, n]) => (await window.yitang.media.framesDecoded(id)) >= n",
        arg=[identity, start + MORE_FRAMES],
        timeout=within_ms,
    )


async def test_the_page_comes_back_with_media_after_its_node_dies(
    browser: Browser, tmp_path: Path
) -> None:
    async with cluster(tmp_path, 2, allow_each_other=True) as c:
        a, b = c.nodes
        room_id = await c.create_room()
        host_token = await c.token(room_id, "host", "host", "hunan")
        context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
        errors: list[str] = []
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        member = None
        try:
            await page.goto(f"{a.base_url}/join?token={host_token}")
            await enter(page)
            member = await c.peer(b, room_id, "m1", "member", "shifeng", 2)
            await _video_flowing(page, "m1", 20_000)
            await member.wait_for(lambda: member.frames_from("host", "video") >= 10, timeout=20)
            restarts = member.media_restarts

            await a.kill()
            killed_at = time.monotonic()
            # The page reconnects to B and joins again (a new session, new media).
            await page.wait_for_function(
                "() => window.yitang.conn.joinCount >= 2 && window.yitang.conn.ready",
                timeout=RECOVERY_SECONDS * 1000,
            )
            await expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected")
            left = (RECOVERY_SECONDS - (time.monotonic() - killed_at)) * 1000
            await _video_flowing(page, "m1", max(left, 1000))
            await member.wait_for(
                lambda: (
                    member.media_restarts > restarts and member.frames_from("host", "video") >= 10
                ),
                timeout=max(RECOVERY_SECONDS - (time.monotonic() - killed_at), 1),
            )
            elapsed = time.monotonic() - killed_at
            print(f"browser and aiortc participant back with media {elapsed:.1f} s after the kill")
            assert elapsed <= RECOVERY_SECONDS
            assert b.base_url in await page.evaluate("() => window.yitang.conn.base")
            assert errors == []
        finally:
            if member is not None:
                await member.close()
            await context.close()
