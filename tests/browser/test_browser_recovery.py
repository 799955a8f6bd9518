"""A browser whose network is cut for 5 s gets its media back by itself, and the others
see it "reconnecting", not leaving.

The city venue's browser may only go through the TURN relay (`?ice=relay`), and
reaches it through a userspace UDP relay (`tests/lossy_relay.py`) that the test
makes drop everything for 5 s: the venue's whole media path is cut (Chromium's
CDP network emulation does not reach WebRTC's UDP here: its connections stay
`connected` while "offline"). Two cuts:

* the media path alone (the signaling socket survives): aiortc has no ICE
  restart, so the page notices its connections stay `disconnected` and rebuilds
  both (`static/js/recovery.js`, with backoff while the network is still down);
* the whole network (CDP offline emulation, which does close the page's
  WebSocket and refuse new ones, plus the media path): the server holds the
  venue as reconnecting (`--reconnect-grace`), the page connects and joins again
  when the network is back and rebuilds both connections.

Either way the host's page shows the reconnecting notice on that venue's tile,
never a leave, then the venue's video again within 10 s of the network's return.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, CDPSession, Page, expect

from tests.browser.support import PageFactory, Participants, js, screenshot
from tests.conftest import free_port
from tests.helpers import ApiHandle
from tests.lossy_relay import LossyRelay, lossy_relay
from tests.processes import server_process
from tests.turn_kit import coturn

#: The publish and subscribe connections of a joined page are both connected.
MEDIA_CONNECTED = """() => {
  const m = window.yitang.media;
  return !!(m.pubPc && m.subPc && m.pubPc.connectionState === "connected"
    && m.subPc.connectionState === "connected");
}"""
#: How long the network is cut, and the issue's bound for media to be back after it returns.
CUT_SECONDS = 5.0
BACK_WITHIN_SECONDS = 10.0
MORE_FRAMES = 15


async def _frames(page: Page, identity: str) -> int:
    return int(await page.evaluate("id => window.yitang.media.framesDecoded(id)", identity))


@pytest.mark.parametrize("socket_too", [False, True], ids=["media-path", "whole-network"])
async def test_a_cut_network_brings_media_back_and_others_see_reconnecting(
    browser: Browser,
    redis_client: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
    socket_too: bool,
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
            await _cut_and_recover(pages, room, relay, socket_too=socket_too)
        finally:
            await pages.close()
        pages.assert_no_page_errors()


async def _set_offline(cdp: CDPSession, offline: bool) -> None:
    conditions = {"offline": offline, "latency": 0, "downloadThroughput": -1}
    await cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1})


async def _cut_and_recover(
    pages: PageFactory, room: Participants, relay: LossyRelay, *, socket_too: bool
) -> None:
    host = await pages.join(dataclasses.replace(room.host, url=room.host.url + "&ice=direct"))
    member = await pages.join(dataclasses.replace(room.m1, url=room.m1.url + "&ice=relay"))
    for page in (host, member):
        await page.wait_for_function(MEDIA_CONNECTED, timeout=30_000)
    tile = host.locator('#tile-groups .tile[data-identity="m1"]')
    await expect(tile).to_have_attribute("data-reconnecting", "false")
    await host.wait_for_function(
        "async () => (await window.yitang.media.framesDecoded('m1')) >= 15", timeout=30_000
    )
    joins = await js(member, "() => window.yitang.conn.joinCount")

    cdp = await member.context.new_cdp_session(member)
    await cdp.send("Network.enable")

    # The venue's network goes away for 5 s.
    relay.loss = 1.0
    if socket_too:
        await _set_offline(cdp, True)
    cut_at = time.monotonic()
    if socket_too:
        # The socket is gone: the page says it reconnects, the server holds the venue.
        await expect(member.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")
        await expect(member.locator("#banner")).to_have_attribute("data-key", "banner.reconnecting")
    else:
        # The socket survives (TCP rides out 5 s): the page notices its media connections
        # stay disconnected and starts rebuilding them.
        await member.wait_for_function("() => window.yitang.mediaRestarts >= 1", timeout=20_000)
        await expect(member.locator("#banner")).to_have_attribute(
            "data-key", "banner.media_restarting"
        )
    await expect(tile).to_have_attribute("data-reconnecting", "true", timeout=20_000)
    await expect(tile.locator(".tile-reconnecting")).to_be_visible()
    await expect(tile.locator(".tile-reconnecting")).to_have_text("正在重新连接…")
    await screenshot(host, "recovery-reconnecting-tile")
    assert "m1" in await js(host, "() => [...window.yitang.store.participants.keys()]")
    remaining = CUT_SECONDS - (time.monotonic() - cut_at)
    if remaining > 0:
        # The fault's duration, not a wait for a condition.
        await host.wait_for_timeout(remaining * 1000)
    frames_at_return = await _frames(host, "m1")
    relay.loss = 0.0
    if socket_too:
        await _set_offline(cdp, False)
    returned_at = time.monotonic()

    # Within 10 s of the network's return: the host decodes the venue's video again and
    # its tile is no longer reconnecting; the page rebuilt its connections by itself.
    await host.wait_for_function(
        "async ([id, n]) => (await window.yitang.media.framesDecoded(id)) >= n",
        arg=["m1", frames_at_return + MORE_FRAMES],
        timeout=BACK_WITHIN_SECONDS * 1000,
    )
    await expect(tile).to_have_attribute(
        "data-reconnecting", "false", timeout=BACK_WITHIN_SECONDS * 1000
    )
    await member.wait_for_function(MEDIA_CONNECTED, timeout=BACK_WITHIN_SECONDS * 1000)
    elapsed = time.monotonic() - returned_at
    assert elapsed <= BACK_WITHIN_SECONDS, f"media back {elapsed:.1f} s after the network"
    # The page says its media is restored (the notice then fades by itself).
    await member.wait_for_function("() => !window.yitang.recovery.active")
    # The same signaling connection, or (the socket was cut) one more join of the same
    # participant; the host never saw it leave.
    if socket_too:
        # The socket comes back on its own schedule (Socket.IO's reconnection delay),
        # which may be after the media: wait for the rejoin, then count.
        await member.wait_for_function(
            "(n) => window.yitang.conn.joinCount >= n",
            arg=joins + 1,
            timeout=BACK_WITHIN_SECONDS * 1000,
        )
    rejoined = await js(member, "() => window.yitang.conn.joinCount")
    assert rejoined == joins + (1 if socket_too else 0)
    host_left = await js(
        host,
        """() => window.yitang.store.timeline.filter(
             (e) => e.type === "left" && e.data.identity === "m1").length""",
    )
    assert host_left == 0
    # And the venue receives the host again.
    start = await _frames(member, "host")
    await member.wait_for_function(
        "async ([id, n]) => (await window.yitang.media.framesDecoded(id)) >= n",
        arg=["host", start + MORE_FRAMES],
        timeout=20_000,
    )
