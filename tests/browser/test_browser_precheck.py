"""The pre-session connection check in real Chromium, and its result in the control room.

Before the session starts, the county venue's staff open their join link and run the
check: the direct leg (UDP to the server) and the relay leg (through a real coturn)
each show what the server measured, then a plain verdict. The operator's control room,
open at the same time, shows that venue's result at once, although no session runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import aiohttp
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from server.precheck.models import Reason, Verdict
from tests.browser.support import PageFactory, Participants, screenshot
from tests.conftest import free_port
from tests.helpers import ApiHandle
from tests.lossy_relay import lossy_relay
from tests.processes import server_process
from tests.turn_kit import coturn


async def test_venue_runs_the_check_and_the_control_room_shows_it(
    browser: Browser, redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with (
        coturn(tmp_path / "turn") as turn,
        server_process(
            tmp_path / "data", free_port(), "--redis-url", redis_url, *turn.serve_args()
        ) as node,
        aiohttp.ClientSession() as http,
    ):
        server = ApiHandle(node.base_url, node.api_key, http)
        room = await Participants.invite(server)
        pages = PageFactory(browser, server)
        try:
            control = await pages.new_page()
            await control.goto(f"{server.base_url}/control")
            await control.fill("#api-key", server.api_key)
            await control.click("#key-form button[type=submit]")
            await expect(control.locator("body")).to_have_attribute("data-feed", "live")
            await expect(control.locator("#prechecks-empty")).to_be_visible()

            venue = await pages.new_page(lang="en")
            await venue.goto(room.m2.url)
            panel = venue.locator("#precheck")
            await expect(panel).to_be_visible()
            await expect(panel.locator('[data-leg="direct"]')).to_have_attribute(
                "data-state", "idle"
            )
            # Every reason the server can give has words in both languages.
            keys = await venue.evaluate(
                "async () => (await import('/static/js/i18n.js')).allKeys()"
            )
            for lang in ("zh", "en"):
                wanted = {f"precheck.reason_{r}" for r in get_args(Reason)}
                wanted |= {f"precheck.verdict_{v}" for v in get_args(Verdict)}
                assert wanted <= set(keys[lang]), wanted - set(keys[lang])
            await venue.click("#precheck-run")
            verdict = venue.locator("#precheck-verdict")
            await expect(verdict).to_be_visible(timeout=90_000)
            direct = panel.locator('[data-leg="direct"]')
            relay = panel.locator('[data-leg="relay"]')
            await expect(direct).to_have_attribute("data-state", "done")
            await expect(relay).to_have_attribute("data-state", "done")
            # The relay leg really went through TURN, as the server's ICE saw it.
            await expect(relay).to_have_attribute("data-candidate", "relay")
            await expect(direct.locator(".precheck-leg-result")).to_contain_text("round trip")
            await expect(relay.locator(".precheck-leg-result")).to_contain_text("uplink")
            # A plain verdict: loopback is a good link (usable at worst on a loaded machine).
            assert await verdict.get_attribute("data-verdict") in ("good", "usable")
            await expect(verdict).to_have_text(re.compile(r"^(Good connection|Usable: .+)$"))
            await expect(venue.locator("#precheck-by-server")).to_be_visible()
            await screenshot(venue, "precheck-join-page")

            # The control room shows it, before any session has started.
            row = control.locator(
                f'[data-precheck-room="{room.room_id}"] tr[data-identity="{room.m2.identity}"]'
            )
            await expect(row).to_be_visible(timeout=20_000)
            await expect(row.locator('[data-field="venue"]')).to_have_text(room.m2.venue_name)
            await expect(row.locator('[data-field="verdict"]')).to_have_attribute(
                "data-verdict", (await verdict.get_attribute("data-verdict")) or ""
            )
            await expect(row.locator('[data-field="relay"]')).to_contain_text("relay")
            await expect(row.locator('[data-field="direct"]')).not_to_have_text("–")
            await expect(control.locator("#rooms-empty")).to_be_visible()
            await screenshot(control, "precheck-control-room")
        finally:
            await pages.close()
        pages.assert_no_page_errors()


async def test_a_poor_check_alerts_the_control_room_until_the_venue_checks_again(
    browser: Browser, redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # The county venue's UDP to the server is blocked (the server answers only what comes
    # out of the relay, 127.0.0.2), and its link to the relay drops a sixth of the
    # datagrams: the check says poor, and the operator sees it before the session.
    async with (
        coturn(tmp_path / "turn", relay_ip="127.0.0.2") as turn,
        lossy_relay(("127.0.0.1", turn.port)) as relay,
        server_process(
            tmp_path / "data", free_port(), "--redis-url", redis_url,
            "--turn-secret", turn.secret,
            "--turn-url", f"turn:127.0.0.1:{relay.port}?transport=udp",
            remote_allow="127.0.0.2/32",
        ) as node,
        aiohttp.ClientSession() as http,
    ):  # fmt: skip
        server = ApiHandle(node.base_url, node.api_key, http)
        room = await Participants.invite(server)
        pages = PageFactory(browser, server)
        try:
            control = await pages.new_page(lang="en")
            await control.goto(f"{server.base_url}/control")
            await control.fill("#api-key", server.api_key)
            await control.click("#key-form button[type=submit]")
            await expect(control.locator("body")).to_have_attribute("data-feed", "live")
            alert = control.locator(
                f'.ctl-alert[data-kind="precheck"][data-room="{room.room_id}"]'
                f'[data-venue="{room.m2.venue}"]'
            )

            venue = await pages.new_page(lang="en")
            await venue.goto(room.m2.url)
            verdict = venue.locator("#precheck-verdict")
            relay.loss = 0.15
            await venue.click("#precheck-run")
            await expect(verdict).to_have_attribute("data-verdict", "poor", timeout=90_000)
            # The alert names the venue and says why, in the operator's language.
            await expect(alert).to_be_visible(timeout=20_000)
            await expect(alert).to_contain_text(room.m2.venue_name)
            await expect(alert).to_contain_text("high packet loss")
            await screenshot(control, "precheck-alert-control-room")

            # The venue's link is repaired; its staff check again: usable (through TURN),
            # and the alert is gone.
            relay.loss = 0.0
            await venue.click("#precheck-run")
            await expect(verdict).to_have_attribute("data-verdict", "usable", timeout=90_000)
            await expect(alert).to_have_count(0, timeout=20_000)
        finally:
            await pages.close()
        pages.assert_no_page_errors()
