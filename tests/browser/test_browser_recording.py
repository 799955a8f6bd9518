"""The host starts and stops recording from the console; every browser shows the indicator."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.support import PageFactory, Participants, open_tab


async def test_host_records_from_the_console_and_everyone_sees_it(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    member = await pages.join(room.m1)
    observer = await pages.join(room.obs)
    for page in (host, member, observer):
        await expect(page.locator("#rec-indicator")).to_be_hidden()
    await expect(member.locator("#host-record")).to_have_count(0)

    await host.locator("#host-record").click()
    # Everyone will be told: the host confirms first (issue 14).
    await host.locator("#confirm-dialog .dialog-confirm").click()
    await expect(host.locator("#host-record")).to_have_attribute("data-recording", "true")
    for page in (host, member, observer):
        await expect(page.locator("#rec-indicator")).to_be_visible()
    await open_tab(member, "chat")
    await expect(member.locator('.chat-event[data-type="recording_started"]')).to_have_count(1)

    await host.locator("#host-record").click()
    for page in (host, member, observer):
        await expect(page.locator("#rec-indicator")).to_be_hidden()
    await expect(member.locator('.chat-event[data-type="recording_stopped"]')).to_have_count(1)
