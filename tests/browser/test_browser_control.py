"""The control room page (`/control`) watching two venues in real Chromium, one made lossy.

The zhuzhou venue's browser may only go through the TURN relay (`?ice=relay`),
and reaches it through a userspace UDP relay that drops a quarter of the
datagrams both ways (`tests/lossy_relay.py`; Chromium's CDP
`Network.emulateNetworkConditions` `packetLoss` does not reach WebRTC's UDP in
this Chromium: the page's own statistics show no loss with it). The operator's
page, connected with the admin key, shows that venue's loss and raises the loss
alert, while the main venue stays clear. The operator's "reconnect" makes that
browser rebuild its peer connections, and only that one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from tests.browser.support import PageFactory, Participants, js, screenshot
from tests.conftest import free_port
from tests.helpers import ApiHandle
from tests.lossy_relay import lossy_relay
from tests.processes import server_process
from tests.turn_kit import coturn

#: The publish and subscribe connections of a joined page are both connected.
MEDIA_CONNECTED = """() => {
  const m = window.yitang.media;
  return !!(m.pubPc && m.subPc && m.pubPc.connectionState === "connected"
    && m.subPc.connectionState === "connected");
}"""


async def test_control_room_shows_a_lossy_venue_alerts_and_reconnects_it(
    browser: Browser, redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with (
        coturn(tmp_path / "turn") as turn,
        lossy_relay(("127.0.0.1", turn.port)) as relay,
        server_process(
            tmp_path / "data", free_port(), "--redis-url", redis_url,
            "--turn-secret", turn.secret,
            "--turn-url", f"turn:127.0.0.1:{relay.port}?transport=udp",
        ) as node,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        server = ApiHandle(node.base_url, node.api_key, http)
        room = await Participants.invite(server)
        pages = PageFactory(browser, server)
        try:
            await _watch_and_reconnect(server, pages, room, relay)
        finally:
            await pages.close()
        pages.assert_no_page_errors()


async def _watch_and_reconnect(
    server: ApiHandle, pages: PageFactory, room: Participants, relay: object
) -> None:
    # The main venue never uses the relay (`?ice=direct`); the city venue goes out through
    # the relay only, and the relay is made lossy.
    host = await pages.join(dataclasses.replace(room.host, url=room.host.url + "&ice=direct"))
    member = await pages.join(dataclasses.replace(room.m1, url=room.m1.url + "&ice=relay"))
    for page in (host, member):
        await page.wait_for_function(MEDIA_CONNECTED, timeout=30_000)
    relay.loss = 0.25  # type: ignore[attr-defined]

    control = await pages.new_page()
    await control.goto(f"{server.base_url}/control")
    await control.fill("#api-key", server.api_key)
    await control.click("#key-form button[type=submit]")
    await expect(control.locator("body")).to_have_attribute("data-feed", "live")
    card = f'[data-room="{room.room_id}"]'
    m1_row = control.locator(f'{card} tr[data-identity="m1"]')
    host_row = control.locator(f'{card} tr[data-identity="host"]')
    # Which path each venue's media takes: the main venue straight to the server (`host`),
    # the city venue through the TURN relay (`relay`). Chromium offers one transport per
    # m-line; the server must know the addresses of the one BUNDLE keeps, or it only
    # learns peer-reflexive (`prflx`) candidates from the checks.
    await expect(host_row.locator('[data-field="candidate"]')).to_have_text("host", timeout=20_000)
    await expect(m1_row.locator('[data-field="candidate"]')).to_have_text("relay", timeout=20_000)
    # The lossy venue: its loss shown, and the alert raised for it (not for the main venue).
    await control.wait_for_function(
        """(sel) => { const c = document.querySelector(sel);
             return c && c.dataset.value !== "" && Number(c.dataset.value) > 0.05; }""",
        arg=f'{card} tr[data-identity="m1"] [data-field="loss"]',
        timeout=30_000,
    )
    alert = control.locator('.ctl-alert[data-kind="loss"][data-identity="m1"]')
    await expect(alert).to_be_visible(timeout=20_000)
    await expect(alert).to_contain_text(room.m1.name)
    host_alert = control.locator('.ctl-alert[data-kind="loss"][data-identity="host"]')
    await expect(host_alert).to_have_count(0)
    host_loss = await host_row.locator('[data-field="loss"]').get_attribute("data-value")
    assert host_loss is not None and float(host_loss or 0) < 0.05, host_loss
    await expect(m1_row).to_have_class("ctl-row flagged")
    await screenshot(control, "control-room-loss-alert")

    # The link recovers; the operator asks that venue to reconnect.
    relay.loss = 0.0  # type: ignore[attr-defined]
    assert await js(member, "window.yitang.mediaRestarts") == 0
    await m1_row.locator('[data-action="reconnect"]').click()
    await expect(control.locator('[data-result="m1"]')).to_contain_text(room.m1.name)
    await member.wait_for_function("() => window.yitang.mediaRestarts === 1")
    await member.wait_for_function(MEDIA_CONNECTED, timeout=30_000)
    await expect(m1_row.locator('[data-field="state"]')).to_have_text(
        "connected / connected", timeout=20_000
    )
    assert await js(host, "window.yitang.mediaRestarts") == 0

    # The operator lowers the city venue to audio only: its page says the control room did,
    # the venue's row shows the cap; restoring it clears both.
    venue_row = control.locator(f'{card} tr.ctl-venue[data-venue="zhuzhou"]')
    await venue_row.locator('[data-action="venue-quality"][data-level="audio_only"]').click()
    await expect(venue_row).to_have_attribute("data-cap", "audio_only")
    notice = member.locator("#bandwidth-notice")
    await expect(notice).to_have_attribute("data-capped", "true", timeout=20_000)
    await expect(notice).to_have_attribute("data-level", "audio_only")
    await expect(notice).to_be_visible()
    await expect(m1_row.locator('[data-field="paused_videos"]')).to_have_attribute(
        "data-receive-cap", "audio_only", timeout=20_000
    )
    # The cap is the city venue's alone: the host's page is not capped. (Whether the host
    # shows a notice at all is its own link's business: on a busy machine its browser can
    # drop packets and step down by itself, rightly. That the city venue's uplink loss
    # does not step its receivers down is shown in tests/media/test_quality_per_receiver.)
    host_notice = host.locator("#bandwidth-notice")
    assert await host_notice.get_attribute("data-capped") in (None, "false")
    await venue_row.locator('[data-action="venue-quality"][data-level="full"]').click()
    await expect(venue_row).to_have_attribute("data-cap", "full")
    await expect(notice).to_be_hidden(timeout=20_000)
    await expect(notice).to_have_attribute("data-capped", "false")

    # The session's own technical staff open its control room from an operator link
    # (no admin key): this session's venues, live, and no key form.
    body = {"identity": "ops", "name": "技术保障", "role": "operator", "venue": "hunan"}
    status, issued = await server.request("POST", f"/api/rooms/{room.room_id}/tokens", body)
    assert status == 201, issued
    staff = await pages.new_page()
    await staff.goto(issued["url"])
    await expect(staff.locator("body")).to_have_attribute("data-feed", "live")
    await expect(staff.locator("#key-form")).to_be_hidden()
    await expect(staff.locator(f'{card} tr[data-identity="m1"]')).to_be_visible(timeout=20_000)
