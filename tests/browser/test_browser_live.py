"""The live broadcast page (`/live/{room}`) in real Chromium, opened by an anonymous viewer.

Two aiortc participants publish; the page (no token: a `public` broadcast) plays
the HLS programme through the vendored hls.js over Media Source Extensions, its
decoded frame count rises, and its banner names the new floor holder within
seconds of the host giving the floor.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from tests.browser.support import PageFactory, Person, js
from tests.helpers import ROOM_SPEC, ApiHandle
from tests.session_peer import SessionPeer


async def _publisher(
    server: ApiHandle, room_id: str, identity: str, role: str, venue: str, name: str, index: int
) -> SessionPeer:
    token = await server.token(room_id, identity, role, venue, name)
    peer = SessionPeer(server.base_url, token, index, amplitude=0.3)
    await peer.join()
    await peer.publish()
    return peer


async def test_anonymous_viewer_plays_the_broadcast_and_sees_the_floor_holder(
    browser: Browser, server: ApiHandle, pages: PageFactory
) -> None:
    status, room = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "broadcast": "public"})
    assert status == 201, room
    room_id = room["id"]
    host = await _publisher(server, room_id, "host", "host", "hunan", "李主持", 1)
    member = await _publisher(server, room_id, "m1", "member", "zhuzhou", "张委员", 2)
    try:
        page = await pages.new_page()
        await page.goto(f"{server.base_url}/live/{room_id}")
        await expect(page.locator("#live-speaker")).to_have_text("李主持", timeout=30_000)
        await page.wait_for_function("() => window.yitangLive.decodedFrames() > 5", timeout=60_000)
        first = await js(page, "() => window.yitangLive.decodedFrames()")
        await page.wait_for_function(
            "n => window.yitangLive.decodedFrames() > n + 5", arg=first, timeout=30_000
        )
        await host.signaling.grant_floor("m1")
        await expect(page.locator("#live-speaker")).to_have_text("张委员", timeout=6_000)
        await expect(page.locator("#live-venue")).to_have_text("株洲市政协会场")
        await expect(page.locator("#live-agenda")).to_have_text("开场")

        # The viewer asks a question: it waits for the moderators (the host is told).
        queued = asyncio.Event()
        host.signaling.on("gallery_queue", lambda payload: queued.set())
        await page.fill("#live-ask-text", "新城的交通怎么规划？")
        await page.fill("#live-ask-district", "石峰区")
        await page.click("#live-ask button[type=submit]")
        await expect(page.locator("#live-ask-status")).to_have_text("已提交，等待主持人审核。")
        await asyncio.wait_for(queued.wait(), 10)
    finally:
        await member.close()
        await host.close()


async def test_host_console_pauses_and_resumes_the_broadcast(
    browser: Browser, server: ApiHandle, pages: PageFactory
) -> None:
    status, room = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "broadcast": "public"})
    assert status == 201, room
    room_id = room["id"]
    token = await server.token(room_id, "host", "host", "hunan", "李主持")
    host = Person("host", "李主持", "host", "hunan", "湖南省政协主会场", "provincial",
                  f"{server.base_url}/join?token={token}")  # fmt: skip
    host_page = await pages.join(host)
    viewer = await pages.new_page()
    await viewer.goto(f"{server.base_url}/live/{room_id}")
    await expect(viewer.locator("#live-speaker")).to_have_text("李主持", timeout=30_000)

    button = host_page.locator("#host-broadcast")
    await expect(button).to_have_text("暂停直播")
    await button.click()
    await expect(button).to_have_attribute("data-paused", "true")
    await expect(viewer.locator("#live-status")).to_have_text("直播已暂停", timeout=6_000)
    await button.click()
    await expect(button).to_have_text("暂停直播")
    await expect(viewer.locator("#live-status")).to_have_text("", timeout=6_000)
