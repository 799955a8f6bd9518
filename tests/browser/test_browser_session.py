"""Running a session from the browser: the host console (agenda, lock, mute requests, end),
chat, network loss and recovery, refused links, the organizer page and translations."""

from __future__ import annotations

import re

from playwright.async_api import expect

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


async def test_host_console_drives_agenda_lock_mute_and_end(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    obs = await pages.join(room.obs)

    # Agenda: next item, then a chosen one; everyone's agenda and top bar follow.
    await host.locator("#host-next-item").click()
    for page in (host, m1, obs):
        await expect(page.locator("#session-agenda")).to_have_text("情况通报")
    await open_tab(host, "agenda")
    await host.locator('.agenda-go[data-index="2"]').click()
    await open_tab(m1, "agenda")
    current = m1.locator('.agenda-item[data-current="true"]')
    await expect(current).to_have_attribute("data-index", "2")
    await expect(current.locator(".agenda-planned")).to_contain_text(room.m2.name)
    await expect(host.locator("#host-next-item")).to_be_disabled()

    # Lock and unlock.
    await host.locator("#host-lock").click()
    await expect(host.locator("#host-lock")).to_have_attribute("data-locked", "true")
    await expect(m1.locator("body")).to_have_attribute("data-locked", "true")
    await host.locator("#host-lock").click()
    await expect(m1.locator("body")).to_have_attribute("data-locked", "false")

    # A mute request turns the member's microphone off and tells them.
    await m1.locator("#mic-button").click()
    await expect(m1.locator("#mic-button")).to_have_attribute("data-state", "on")
    await open_tab(host, "people")
    row = host.locator('[data-participant="m1"]')
    await expect(row).to_have_attribute("data-audio-muted", "false")
    await row.locator(".mute-audio").click()
    await expect(m1.locator("#mic-button")).to_have_attribute("data-state", "off")
    await expect(m1.locator('[data-toast="mute-requested"]')).to_be_visible()
    await expect(row).to_have_attribute("data-audio-muted", "true")
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_attribute(
        "data-audio-muted", "true"
    )

    # Chat both ways; the chat tab counts unread messages.
    await open_tab(m1, "chat")
    await m1.locator("#chat-input").fill("建议增加绿化用地")
    await m1.locator("#chat-form button[type=submit]").click()
    await expect(host.locator("#tab-chat .tab-count")).to_have_text("1")
    await open_tab(host, "chat")
    await expect(host.locator(".chat-msg .chat-text")).to_have_text("建议增加绿化用地")
    await expect(host.locator(".chat-msg .chat-venue")).to_have_text(room.m1.venue_name)

    # Ending asks first; cancelling keeps the session.
    await host.locator("#host-end").click()
    await host.locator("#confirm-dialog .dialog-cancel").click()
    await expect(host.locator("#confirm-dialog")).to_be_hidden()
    await expect(m1.locator("#conn-status")).to_have_attribute("data-state", "connected")
    await host.locator("#host-end").click()
    await host.locator("#confirm-dialog .dialog-confirm").click()
    for page in (host, m1, obs):
        await expect(page.locator("#ended-title")).to_have_text("会议已结束")
        await page.wait_for_function("() => window.yitang.socket.connected === false")


async def test_network_loss_shows_a_banner_and_rejoins_with_fresh_state(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await pages.join(room.m2)
    await m1.context.set_offline(True)
    await expect(m1.locator("#banner")).to_have_attribute("data-key", "banner.reconnecting")
    await expect(m1.locator("#banner")).to_have_text("网络连接中断，正在重新连接…")
    await expect(m1.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")
    await expect(m1.locator('.tile[data-identity="m1"]')).to_have_attribute(
        "data-quality", "offline"
    )
    # Things happen while m1 is away...
    await host.evaluate("() => window.yitang.call('advance_agenda', {})")
    await host.evaluate("() => window.yitang.call('grant_floor', {identity: 'm2'})")
    # "Reconnected" hides itself after 4 s: checked from a record kept in the page, since on
    # a busy machine the test's look can come later than that.
    await record_shown(m1, banner="#banner@data-key")
    await m1.context.set_offline(False)
    # ...and the rejoin's fresh snapshot brings them.
    await expect_shown(m1, banner=r"^banner\.reconnected$")
    await expect(m1.locator("#conn-status")).to_have_attribute("data-state", "connected")
    await expect(m1.locator("#spotlight")).to_have_attribute("data-identity", "m2")
    await expect(m1.locator("#session-agenda")).to_have_text("情况通报")
    assert await m1.evaluate("() => window.yitang.conn.joinCount") == 2
    await expect(host.locator('[data-participant="m1"][data-present="true"]')).to_have_count(1)
    # Still a working participant.
    await host.evaluate("() => window.yitang.call('revoke_floor', {})")
    await expect(m1.locator("#spotlight")).to_have_attribute("data-identity", "host")
    await expect(m1.locator("#banner")).to_be_hidden()


async def test_refused_links_say_why(pages: PageFactory, server: ApiHandle) -> None:
    page = await pages.new_page()
    await page.goto(f"{server.base_url}/join?token=not-a-token")
    await expect(page.locator("#ended-title")).to_have_text("无法加入会议")
    await expect(page.locator("#ended-detail")).to_have_text("参会链接无效。")
    await page.goto(f"{server.base_url}/join")
    await expect(page.locator("#ended-detail")).to_contain_text("缺少参会凭证")


async def test_removed_member_cannot_come_back(pages: PageFactory, room: Participants) -> None:
    host = await pages.join(room.host)
    m2 = await pages.join(room.m2)
    await host.evaluate(
        "() => window.yitang.call('remove_participant', {identity: 'm2', reason: '测试'})"
    )
    await expect(m2.locator("#ended-detail")).to_have_text("原因：测试")
    await m2.reload()
    # Said on loading the link, before any device check.
    await expect(m2.locator("#ended-title")).to_have_text("您已被移出会议")
    await expect(m2.locator("#ended-text")).to_have_text("主持人已将您移出本次会议。")
    await expect(m2.locator("#rejoin-button")).to_be_hidden()


async def test_prejoin_offers_devices_meter_and_muted_entry(
    pages: PageFactory, room: Participants
) -> None:
    page = await pages.new_page()
    await page.goto(room.m1.url)
    await expect(page.locator("#prejoin-who")).to_contain_text(room.m1.name)
    await expect(page.locator("#prejoin-who")).to_contain_text("委员")
    await expect(page.locator("#camera-select option")).not_to_have_count(0)
    await expect(page.locator("#mic-select option")).not_to_have_count(0)
    await page.wait_for_function("() => document.querySelector('#preview-video').videoWidth > 0")
    # The fake microphone plays a tone: the level meter moves once audio may run.
    await page.locator("#prejoin-who").click()
    await page.wait_for_function(
        "() => Number(document.querySelector('#mic-meter').dataset.level) > 0.05"
    )
    await expect(page.locator("#enter-mic-muted")).to_be_checked()
    await page.locator("#enter-cam-off").check()
    await expect(page.locator("#preview-off")).to_be_visible()
    await screenshot(page, "prejoin-member-1280x720")
    await enter(page)
    await expect(page.locator("#mic-button")).to_have_attribute("data-state", "off")
    await expect(page.locator("#cam-button")).to_have_attribute("data-state", "off")
    await expect(page.locator('[data-participant="m1"]')).to_have_attribute(
        "data-video-muted", "true"
    )
    await page.locator("#cam-button").click()
    await expect(page.locator('[data-participant="m1"]')).to_have_attribute(
        "data-video-muted", "false"
    )


async def test_organizer_creates_a_session_and_invitation_links(
    pages: PageFactory, server: ApiHandle
) -> None:
    page = await pages.new_page()
    await page.goto(f"{server.base_url}/organizer")
    # A wrong key: the server's message is shown.
    await page.locator("#api-key").fill("wrong-key")
    await page.locator("#key-form button").click()
    await expect(page.locator("#key-error")).to_have_text("API 密钥无效")
    await page.locator("#api-key").fill(server.api_key)
    await page.locator("#key-form button").click()
    await expect(page.locator("#key-error")).to_be_hidden()
    await expect(page.locator("#rooms-empty")).to_be_visible()

    await page.locator("#room-title").fill("湘江新区协商会")
    await page.locator("#room-topic").fill("四级联动")
    names = ["全国政协会场", "湖南省政协主会场", "长沙市政协会场", "岳麓区政协会场"]
    for row, name in zip(await page.locator(".venue-row").all(), names, strict=True):
        await row.locator(".venue-name-input").fill(name)
    # Venue ids the API refuses (twice the same): its message is shown, nothing is created.
    await page.locator(".venue-row").nth(3).locator(".venue-id").fill("city")
    await page.locator(".agenda-row .item-title").fill("开场")
    await page.locator(".agenda-row .item-speakers").fill("host")
    await page.locator("#create-submit").click()
    await expect(page.locator("#create-error")).to_contain_text("venue ids must be unique")
    await expect(page.locator("#rooms-empty")).to_be_visible()
    await page.locator(".venue-row").nth(3).locator(".venue-id").fill("yuelu")
    await page.locator("#add-item").click()
    await page.locator(".agenda-row").nth(1).locator(".item-title").fill("协商发言")
    await page.locator(".agenda-row").nth(1).locator(".item-speakers").fill("m1, m2")
    await page.locator("#create-submit").click()
    await expect(page.locator("#create-ok")).to_contain_text("湘江新区协商会")
    await expect(page.locator("#rooms-body tr")).to_have_count(1)
    await expect(page.locator("#room-card")).to_be_visible()

    await page.locator("#p-identity").fill("host")
    await page.locator("#p-name").fill("王主任")
    await page.locator("#p-role").select_option("host")
    await expect(page.locator("#p-venue")).to_have_value("provincial")
    await page.locator("#participant-form button[type=submit]").click()
    link_row = page.locator('.link-row[data-identity="host"]')
    await expect(link_row.locator("input.link")).to_have_value(re.compile(r"/join\?token="))
    await page.locator("#p-identity").fill("m1")
    await page.locator("#p-name").fill("赵委员")
    await page.locator("#p-role").select_option("member")
    await page.locator("#p-venue").select_option("yuelu")
    await page.locator("#participant-form button[type=submit]").click()
    await expect(page.locator(".link-row input.link")).to_have_count(2)
    # The host must sit at the main venue: the server says so.
    await page.locator("#p-identity").fill("host2")
    await page.locator("#p-name").fill("钱主任")
    await page.locator("#p-role").select_option("host")
    await page.locator("#p-venue").select_option("yuelu")
    await page.locator("#participant-form button[type=submit]").click()
    await expect(page.locator("#participant-error")).to_have_text("主持人须安排在主会场")

    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    # "Copied" shows for 2 s: checked from a record kept in the page (see expect_shown).
    await record_shown(page, copy='.link-row[data-identity="host"] .copy-link')
    await link_row.locator(".copy-link").click()
    await expect_shown(page, copy="^已复制$")
    url = await link_row.locator("input.link").input_value()
    assert await page.evaluate("() => navigator.clipboard.readText()") == url
    await screenshot(page, "organizer-1280x720")

    # The link works.
    joined = await pages.new_page()
    await joined.goto(url)
    await enter(joined)
    await expect(joined.locator("#session-title")).to_have_text("湘江新区协商会")
    await expect(joined.locator("#host-console")).to_be_visible()


async def test_every_string_exists_in_both_languages(pages: PageFactory, server: ApiHandle) -> None:
    page = await pages.new_page()
    missing = []
    for path in ("/join", "/organizer", "/"):
        await page.goto(server.base_url + path)
        missing += await page.evaluate(
            """async () => {
                const i18n = await import('/static/js/i18n.js');
                const keys = i18n.allKeys();
                const zh = new Set(keys.zh), en = new Set(keys.en);
                const out = [...zh].filter(k => !en.has(k)).map(k => 'en:' + k)
                  .concat([...en].filter(k => !zh.has(k)).map(k => 'zh:' + k));
                const attrs = ['data-i18n', 'data-i18n-placeholder', 'data-i18n-title',
                               'data-i18n-aria-label'];
                for (const el of document.querySelectorAll(attrs.map(a => `[${a}]`).join(','))) {
                  for (const key of [el.dataset.i18n, el.dataset.i18nPlaceholder,
                                     el.dataset.i18nTitle, el.dataset.i18nAriaLabel]) {
                    if (key && !zh.has(key)) out.push(location.pathname + ':' + key);
                  }
                }
                return out;
            }"""
        )
    assert not missing, missing
