"""The room in real browsers: roster by venue and level, floor control, timed floors, roles,
removal, reload, language and phone layout — as each participant's browser shows it."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.support import (
    PHONE,
    STAGE,
    PageFactory,
    Participants,
    Person,
    enter,
    expect_shown,
    open_tab,
    record_shown,
    screenshot,
)

LEVEL_ZH = {"national": "全国", "provincial": "省", "city": "市", "county": "区县"}


async def _everyone(pages: PageFactory, room: Participants) -> dict[str, Page]:
    return {p.identity: await pages.join(p) for p in room.everyone}


async def _expect_spotlight(page: Page, person: Person) -> None:
    spotlight = page.locator("#spotlight")
    await expect(spotlight).to_have_attribute("data-identity", person.identity)
    await expect(spotlight.locator(".tile-name")).to_contain_text(person.name)
    await expect(spotlight.locator(".tile-venue")).to_have_text(person.venue_name)
    await expect(spotlight.locator(".tile-level")).to_have_text(LEVEL_ZH[person.level])


async def test_everyone_is_listed_by_venue_and_tiled_by_level(
    pages: PageFactory, room: Participants
) -> None:
    browsers = await _everyone(pages, room)
    for page in browsers.values():
        for person in room.everyone:
            row = page.locator(
                f'[data-venue-group="{person.venue}"] '
                f'[data-participant="{person.identity}"][data-present="true"]'
            )
            await expect(row).to_have_count(1)
            await expect(row.locator(".person-name")).to_contain_text(person.name)
        # Floor free: the host is spotlighted everywhere.
        await _expect_spotlight(page, room.host)
    for viewer in (room.host, room.m1, room.m2):
        page = browsers[viewer.identity]
        for member in (room.m1, room.m2):
            group = page.locator(f'#tile-groups [data-level-group="{member.level}"]')
            tile = group.locator(f'.tile[data-identity="{member.identity}"]')
            await expect(tile).to_have_count(1)
            await expect(tile.locator(".tile-venue")).to_have_text(member.venue_name)
        # Observers only watch: listed, never tiled.
        await expect(page.locator('.tile[data-identity="obs"]')).to_have_count(0)
    # The host is always visible: spotlighted now, so no second host tile.
    await expect(browsers["m1"].locator("#host-slot")).to_be_hidden()
    await screenshot(browsers["host"], "room-host-1280x720")
    await screenshot(browsers["m1"], "room-member-1280x720")


async def test_hand_grant_and_revoke_move_the_spotlight_everywhere(
    pages: PageFactory, room: Participants
) -> None:
    browsers = await _everyone(pages, room)
    host, m1 = browsers["host"], browsers["m1"]
    await m1.locator("#hand-button").click()
    await expect(m1.locator("#hand-button")).to_have_attribute("data-state", "raised")
    await open_tab(host, "queue")
    queued = host.locator('.queue-item[data-identity="m1"]')
    await expect(queued).to_contain_text(room.m1.name)
    await expect(host.locator("#tab-queue .tab-count")).to_have_text("1")
    # Others see the raised hand on the tile.
    await expect(browsers["m2"].locator('.tile[data-identity="m1"]')).to_have_attribute(
        "data-hand", "raised"
    )

    await queued.locator(".grant").click()
    for page in browsers.values():
        await _expect_spotlight(page, room.m1)
        await expect(page.locator("#spotlight")).to_have_attribute("data-floor", "true")
        # The host stays visible in the small host tile.
        await expect(page.locator('#host-slot .tile[data-identity="host"]')).to_be_visible()
    await expect(m1.locator("#floor-notice")).to_be_visible()
    # "Open my microphone when I get the floor" is on by default: the mic opened.
    await expect(m1.locator("#mic-button")).to_have_attribute("data-state", "on")
    await expect(host.locator('[data-participant="m1"]')).to_have_attribute(
        "data-audio-muted", "false"
    )
    await expect(host.locator(".queue-item")).to_have_count(0)
    await screenshot(m1, "room-member-has-floor-1280x720")

    await host.locator("#host-revoke").click()
    for page in browsers.values():
        await _expect_spotlight(page, room.host)
        await expect(page.locator("#host-slot")).to_be_hidden()
    await expect(m1.locator("#floor-notice")).to_be_hidden()
    # The microphone the floor opened closes again with it.
    await expect(m1.locator("#mic-button")).to_have_attribute("data-state", "off")


async def test_timed_floor_counts_down_and_expires_back_to_the_host(
    pages: PageFactory, room: Participants
) -> None:
    browsers = await _everyone(pages, room)
    host = browsers["host"]
    # What each browser showed is checked from a record kept in the page, not by looking at
    # the screen now: the 2-second floor below ends on the server's clock whether or not the
    # test has finished looking at all four browsers, and on a busy machine it had not.
    for page in browsers.values():
        await record_shown(page, **STAGE)
    # The host console's smallest limit is a minute: check it reaches the countdown...
    await host.locator("#host-time-limit").select_option("60")
    await open_tab(host, "people")
    await host.locator('[data-participant="m1"] .give-floor').click()
    for page in browsers.values():
        await expect_shown(page, identity=f"^{room.m1.identity}$", countdown=r"(1:00|0:5\d)")
    # ...then test expiry with a 2-second grant sent through the page's own socket.
    await host.evaluate(
        "() => window.yitang.call('grant_floor', {identity: 'm2', time_limit_seconds: 2})"
    )
    for page in browsers.values():
        await expect_shown(
            page,
            identity=f"^{room.m2.identity}$",
            name=re.escape(room.m2.name),
            venue=f"^{re.escape(room.m2.venue_name)}$",
            level=f"^{LEVEL_ZH[room.m2.level]}$",
            countdown="0:0[0-2]",
        )
    await expect_shown(browsers["m2"], notice="0:0")
    for page in browsers.values():
        await _expect_spotlight(page, room.host)
        await expect(page.locator("#spotlight .countdown")).to_be_hidden()
    await open_tab(host, "chat")
    await expect(host.locator('.chat-event[data-type="floor_expired"]')).to_have_count(1)


async def test_observer_has_no_publish_or_chat_controls_but_may_ask_to_connect(
    pages: PageFactory, room: Participants
) -> None:
    page = await pages.new_page()
    await page.goto(room.obs.url)
    # No device setup before entering: observers never open camera or microphone.
    await expect(page.locator("#observer-note")).to_be_visible()
    await expect(page.locator("#device-setup")).to_be_hidden()
    await enter(page)
    host = await pages.join(room.host)
    for control in (
        "#mic-button",
        "#cam-button",
        "#yield-button",
        "#chat-form",
        "#auto-unmute",
    ):
        await expect(page.locator(control)).to_have_count(0)
    await expect(page.locator("#observer-tag")).to_be_visible()
    # A raised hand asks to be connected (连线; tests/browser/test_browser_stage.py).
    await expect(page.locator("#hand-button")).to_contain_text("申请连线")
    await expect(page.locator("#host-console")).to_be_hidden()
    assert await page.evaluate("() => window.yitang.media.localStream") is None
    # They still see the chat.
    await open_tab(host, "chat")
    await host.locator("#chat-input").fill("请各位委员准备发言")
    await host.locator("#chat-input").press("Enter")
    await open_tab(page, "chat")
    await expect(page.locator(".chat-msg .chat-text")).to_have_text("请各位委员准备发言")
    await expect(page.locator("#chat-readonly")).to_be_visible()


async def test_host_removes_a_member(pages: PageFactory, room: Participants) -> None:
    browsers = await _everyone(pages, room)
    host, m2 = browsers["host"], browsers["m2"]
    await open_tab(host, "people")
    await host.locator('[data-participant="m2"] .remove').click()
    dialog = host.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".dialog-text")).to_contain_text(room.m2.name)
    await dialog.locator(".dialog-confirm").click()

    await expect(m2.locator("#ended")).to_be_visible()
    await expect(m2.locator("#ended-title")).to_have_text("您已被移出会议")
    await m2.wait_for_function("() => window.yitang.socket.connected === false")
    assert await m2.evaluate("() => window.yitang.media.localStream") is None
    for identity in ("host", "m1", "obs"):
        page = browsers[identity]
        await expect(page.locator('.tile[data-identity="m2"]')).to_have_count(0)
        await expect(page.locator('[data-participant="m2"][data-present="true"]')).to_have_count(0)


async def test_reload_rejoins_the_same_session_once(pages: PageFactory, room: Participants) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await m1.reload()
    await enter(m1)
    for page in (host, m1):
        await expect(page.locator('[data-participant="m1"][data-present="true"]')).to_have_count(1)
        await expect(page.locator('[data-participant="host"][data-present="true"]')).to_have_count(
            1
        )
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_count(1)
    await expect(host.locator("#people-body .people-count")).to_contain_text("2")
    # The rejoined page works: it can still ask for the floor.
    await m1.locator("#hand-button").click()
    await open_tab(host, "queue")
    await expect(host.locator('.queue-item[data-identity="m1"]')).to_have_count(1)


async def test_second_tab_replaces_the_first(pages: PageFactory, room: Participants) -> None:
    first = await pages.join(room.m1)
    second = await pages.join(room.m1)
    await expect(first.locator("#ended")).to_be_visible()
    await expect(first.locator("#ended-title")).to_have_text("已在别处加入")
    await expect(second.locator("#conn-status")).to_have_attribute("data-state", "connected")


async def test_language_switch_changes_the_ui_and_is_remembered(
    pages: PageFactory, room: Participants
) -> None:
    page = await pages.join(room.m1)
    await expect(page.locator("#tab-agenda")).to_have_text("议程")
    await expect(page.locator("#hand-button")).to_contain_text("申请发言")
    await page.locator("#lang-switch").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#tab-agenda")).to_have_text("Agenda")
    await expect(page.locator("#hand-button")).to_contain_text("Ask to speak")
    await expect(page.locator("#conn-status")).to_contain_text("Connected")
    await expect(page.locator('.tile[data-identity="m1"] .tile-level')).to_have_text("City")
    await expect(page.locator("#spotlight .tile-name")).to_have_text("Waiting for the host")
    await screenshot(page, "room-member-english-1280x720")
    await page.reload()
    await expect(page.locator("#enter-button")).to_have_text("Enter the session")
    await enter(page)
    await expect(page.locator("#tab-people")).to_contain_text("People")
    await page.locator("#lang-switch").click()
    await expect(page.locator("#tab-people")).to_contain_text("参会")


async def test_phone_width_layout_has_no_horizontal_overflow(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host, viewport=PHONE)
    m1 = await pages.join(room.m1, viewport=PHONE)
    await pages.join(room.m2)
    await expect(m1.locator('.tile[data-identity="m2"]')).to_have_count(1)
    for page in (host, m1):
        width = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], f"page wider than the phone: {width}"
        await expect(page.locator("#controls")).to_be_in_viewport()
        await expect(page.locator("#spotlight")).to_be_in_viewport()
        box = await page.locator("#spotlight").bounding_box()
        assert box is not None and box["width"] <= PHONE["width"]
    # Panels are tabs below the stage on a phone.
    await open_tab(m1, "agenda")
    await expect(m1.locator('.agenda-item[data-current="true"]')).to_contain_text("开场")
    await open_tab(m1, "people")
    await screenshot(m1, "room-member-phone-390")
    await open_tab(host, "queue")
    await screenshot(host, "room-host-phone-390")
    width = await host.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"host console wider than the phone: {width}"
