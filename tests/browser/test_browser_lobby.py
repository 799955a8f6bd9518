"""The lobby in the browser (zh and en): a newcomer waits on a page of its own and enters
when admitted, without reloading — also when the host reloaded meanwhile; a denied one is
told; the device check says there is a lobby."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import PageFactory, enter, open_tab, screenshot
from tests.helpers import ApiHandle

TEXT = {
    "zh": {
        "waiting": "1 人在等候室",
        "lobby_title": "正在等候主持人准许入会",
        "denied": "未获准入会",
    },
    "en": {
        "waiting": "1 waiting in the lobby",
        "lobby_title": "Waiting for the host to let you in",
        "denied": "Not admitted",
    },
}


async def _open(pages: PageFactory, url: str, lang: str) -> Page:
    page = await pages.new_page(lang=lang)
    await page.goto(url)
    return page


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_lobby_admit_after_a_host_reload_and_deny(
    pages: PageFactory, server: ApiHandle, lang: str
) -> None:
    text = TEXT[lang]
    room = await server.create_room(lobby=True)
    rid = room["id"]
    base = f"{server.base_url}/join?token="
    host_url = base + await server.token(rid, "host", "host", "hunan", name="李主席")
    m1_url = base + await server.token(rid, "m1", "member", "zhuzhou", name="张委员")
    m2_url = base + await server.token(rid, "m2", "member", "shifeng", name="刘委员")

    host = await _open(pages, host_url, lang)
    await enter(host)
    member = await _open(pages, m1_url, lang)
    await expect(member.locator("#prejoin-lobby")).to_be_visible()
    await member.locator("#enter-button").click()
    await expect(member.locator("#lobby-wait h1")).to_have_text(text["lobby_title"])
    await expect(member.locator("#room")).to_be_hidden()
    await expect(member.locator("#conn-status")).to_have_attribute("data-state", "waiting")

    box = host.locator("#lobby-box")
    await expect(box.locator("#lobby-count")).to_have_text(text["waiting"])
    await expect(box.locator('[data-lobby="m1"] .who-name')).to_have_text("张委员")
    await expect(box.locator('[data-lobby="m1"] .who-venue')).to_have_text("株洲市政协会场")
    await expect(host.locator('[data-toast="lobby-arrived"]')).to_contain_text("张委员")
    await screenshot(host, f"lobby-host-{lang}")
    await screenshot(member, f"lobby-waiting-{lang}")

    # The host reloads while m1 waits: the lobby is still there.
    await host.reload()
    await enter(host)
    await expect(host.locator('#lobby-box [data-lobby="m1"]')).to_be_visible()
    await member.evaluate("() => { window.__sameDocument = true; }")
    await host.locator('#lobby-box [data-lobby="m1"] .lobby-admit').click()
    # In, on the same page (no reload): the room, the host on the stage.
    await expect(member.locator("#room")).to_be_visible()
    await expect(member.locator("#spotlight")).to_have_attribute("data-identity", "host")
    assert await member.evaluate("() => window.__sameDocument === true")
    await expect(member.locator("#lobby-wait")).to_be_hidden()
    await expect(host.locator("#lobby-box")).to_be_hidden()
    await open_tab(host, "people")
    await expect(host.locator('[data-participant="m1"][data-present="true"]')).to_have_count(1)

    # Turned away: told so.
    other = await _open(pages, m2_url, lang)
    await other.locator("#enter-button").click()
    await expect(other.locator("#lobby-wait")).to_be_visible()
    await host.locator("#lobby-deny-all").click()
    await expect(other.locator("#ended-title")).to_have_text(text["denied"])
    await expect(host.locator("#lobby-box")).to_be_hidden()
