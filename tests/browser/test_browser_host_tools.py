"""The host's tools in the browser (zh and en): a co-host's console, mute all that spares
the speaker, time warnings and notices, raised hands told to the host, queue order kept
across a host reload, pin, rename, and the recording notice."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import (
    PageFactory,
    Participants,
    enter,
    expect_shown,
    open_tab,
    record_shown,
    screenshot,
)
from tests.helpers import ApiHandle

TEXT = {
    "zh": {
        "cohost_console": "主持台（联席主持）",
        "pinned": "主持人置顶",
        "warning": "发言时间还剩 30 秒",
        "hand": "申请发言",
        "recorded": "本次会议正在录制",
    },
    "en": {
        "cohost_console": "Host console (co-host)",
        "pinned": "Pinned by the host",
        "warning": "30 seconds of speaking time left",
        "hand": "asks to speak",
        "recorded": "This session is being recorded",
    },
}


def _contains(*texts: str) -> str:
    """A pattern (for `expect_shown`) that finds every one of `texts`, in any order."""
    return "".join(f"(?=.*{re.escape(text)})" for text in texts)


async def _mic_on(page: Page) -> None:
    await page.locator("#mic-button").click()
    await expect(page.locator("#mic-button")).to_have_attribute("data-state", "on")


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_cohost_console_mute_all_and_warnings(
    pages: PageFactory, server: ApiHandle, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    cohost_token = await server.token(room.room_id, "co", "cohost", "zhuzhou", name="周联席")
    host = await pages.join(room.host, lang=lang)
    m1 = await pages.join(room.m1, lang=lang)
    m2 = await pages.join(room.m2, lang=lang)
    co = await pages.new_page(lang=lang)
    await co.goto(f"{server.base_url}/join?token={cohost_token}")
    await enter(co)
    # The co-host's console: the floor and moderation, no end, no recording; no removing the host.
    await expect(co.locator("#host-console h2")).to_have_text(text["cohost_console"])
    await expect(co.locator("#host-end")).to_have_count(0)
    await expect(co.locator("#host-record")).to_have_count(0)
    await open_tab(co, "people")
    await expect(co.locator('[data-participant="host"] .remove')).to_have_count(0)
    await expect(co.locator('[data-participant="m1"] .remove')).to_have_count(1)

    # A raised hand reaches the hosts at once (a toast for 6 s: kept, as a busy machine may
    # look later than that).
    for page in (host, co):
        await record_shown(page, hand='[data-toast="hand-raised"]')
    await m1.locator("#hand-button").click()
    for page in (host, co):
        await expect_shown(page, hand=_contains(room.m1.name, text["hand"]))

    # The co-host gives m1 the floor for 20 s: amber, then red from 15 s; the speaker and
    # the hosts are told at 30 s.
    await _mic_on(m1)
    await _mic_on(m2)
    # Amber lasts 5 s and the warning is a toast: every state shown is kept.
    await record_shown(m1, notice="#floor-notice@data-warn", warning='[data-toast="floor-warning"]')
    await record_shown(host, warning='[data-toast="floor-warning"]')
    await co.evaluate(
        "() => window.yitang.call('grant_floor', {identity: 'm1', time_limit_seconds: 20})"
    )
    await expect_shown(m1, notice="^amber$")
    await expect_shown(m1, warning=f"^{re.escape(text['warning'])}$")
    await expect_shown(host, warning=_contains(room.m1.name))
    await expect(m2.locator("#spotlight .countdown")).to_have_attribute("data-warn", "red")
    await expect(m1.locator("#floor-notice")).to_have_attribute("data-warn", "red")
    await screenshot(m2, f"time-warning-red-{lang}")
    # +3 minutes: no warning any more.
    await co.locator("#host-extend-180").click()
    await expect(m2.locator("#spotlight .countdown")).to_have_attribute("data-warn", "")

    # Mute all spares the floor holder.
    await co.locator("#host-mute-all").click()
    await expect(m2.locator("#mic-button")).to_have_attribute("data-state", "off")
    await expect(m2.locator('[data-toast="mute-requested"]')).to_be_visible()
    await expect(host.locator('[data-participant="m2"]')).to_have_attribute(
        "data-audio-muted", "true"
    )
    await expect(m1.locator("#mic-button")).to_have_attribute("data-state", "on")

    # The end-of-turn notice never covers the chat input.
    await open_tab(m1, "chat")
    await m1.locator("#yield-button").click()
    toast = m1.locator('[data-toast="floor-ended"]')
    await expect(toast).to_be_visible()
    box, chat = await toast.bounding_box(), await m1.locator("#chat-input").bounding_box()
    assert box is not None and chat is not None
    overlap_x = box["x"] < chat["x"] + chat["width"] and chat["x"] < box["x"] + box["width"]
    overlap_y = box["y"] < chat["y"] + chat["height"] and chat["y"] < box["y"] + box["height"]
    assert not (overlap_x and overlap_y), (box, chat)


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_queue_order_pin_and_rename(
    pages: PageFactory, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    host = await pages.join(room.host, lang=lang)
    m1 = await pages.join(room.m1, lang=lang)
    m2 = await pages.join(room.m2, lang=lang)
    # One after the other (the queue is in the order the server got the hands), each
    # page showing its own hand raised once the server took it.
    for member in (m1, m2):
        await member.locator("#hand-button").click()
        await expect(member.locator("#hand-button")).to_have_attribute("data-state", "raised")
    await open_tab(host, "queue")
    items = host.locator(".queue-item")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_have_attribute("data-identity", "m1")
    await items.nth(0).locator(".queue-down").click()
    await expect(items.nth(0)).to_have_attribute("data-identity", "m2")
    await open_tab(m1, "queue")
    await expect(m1.locator(".queue-item").nth(0)).to_have_attribute("data-identity", "m2")
    # The order is the session's, not the page's: a reload keeps it.
    await host.reload()
    await enter(host)
    await open_tab(host, "queue")
    await expect(host.locator(".queue-item").nth(0)).to_have_attribute("data-identity", "m2")
    await expect(host.locator(".queue-item").nth(1)).to_have_attribute("data-identity", "m1")

    # Pin m2's venue into everyone's spotlight, then give the stage back.
    await open_tab(host, "people")
    await host.locator('[data-participant="m2"] .pin').click()
    for page in (host, m1, m2):
        await expect(page.locator("#spotlight")).to_have_attribute("data-identity", "m2")
        await expect(page.locator("#spotlight")).to_have_attribute("data-pinned", "true")
    await expect(m1.locator("#spotlight .tile-status")).to_have_text(text["pinned"])
    await host.locator("#host-unpin").click()
    await expect(m1.locator("#spotlight")).to_have_attribute("data-identity", "host")

    # Rename: everyone sees the new name, in the list and on the tile.
    await host.locator('[data-participant="m1"] .rename').click()
    dialog = host.locator("#prompt-dialog")
    await dialog.locator(".dialog-input").fill("株洲市 张建国委员")
    await dialog.locator(".dialog-confirm").click()
    await open_tab(m2, "people")
    await expect(m2.locator('[data-participant="m1"] .person-name')).to_have_text(
        "株洲市 张建国委员"
    )
    await expect(m2.locator('.tile[data-identity="m1"] .tile-name')).to_have_text(
        "株洲市 张建国委员"
    )
    await screenshot(host, f"host-tools-{lang}")


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_recording_asks_first_and_everyone_is_told(
    pages: PageFactory, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    host = await pages.join(room.host, lang=lang)
    m1 = await pages.join(room.m1, lang=lang)
    # The host's camera must be up before there is anything to record.
    await host.wait_for_function("() => window.yitang.media.pubPc?.connectionState === 'connected'")
    await host.locator("#host-record").click()
    dialog = host.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await dialog.locator(".dialog-cancel").click()
    await expect(m1.locator("#rec-notice")).to_be_hidden()
    await host.locator("#host-record").click()
    await dialog.locator(".dialog-confirm").click()
    for page in (host, m1):
        await expect(page.locator("#rec-notice")).to_contain_text(text["recorded"])
    await m1.locator("#rec-notice-close").click()
    await expect(m1.locator("#rec-notice")).to_be_hidden()
    await expect(m1.locator("#rec-indicator")).to_be_visible()
    # Someone about to join is told on the device-check page.
    late = await pages.new_page(lang=lang)
    await late.goto(room.m2.url)
    await expect(late.locator("#prejoin-recording")).to_contain_text(text["recorded"])
    await screenshot(late, f"prejoin-recorded-{lang}")
    await host.evaluate("() => window.yitang.call('stop_recording', {})")
