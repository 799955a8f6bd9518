"""Micro-suggestions in the browser (zh and en): a member submits one before the session from
the join page, or in the session from the agenda panel on an agenda item; the host sees it
under that item, the observer does not (and has no form; that other members do not see it
either is shown in tests/test_suggestions.py)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import PageFactory, Participants, open_tab, screenshot
from tests.helpers import ApiHandle

TEXT = {
    "zh": {"sent": "建议已提交", "category": "生态环境", "heading": "2. 情况通报（1 条）"},
    "en": {"sent": "Suggestion submitted", "category": "Environment", "heading": "2. 情况通报 (1)"},
}
TITLE = "设立生态修复专项资金"
BODY = "建议市财政设立清水塘生态修复专项资金，分三年投入。"


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_member_submits_a_suggestion_and_the_host_sees_it_under_its_item(
    pages: PageFactory, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    host = await pages.join(room.host, lang=lang)
    m1 = await pages.join(room.m1, lang=lang)
    obs = await pages.join(room.obs, lang=lang)
    for page in (host, m1, obs):
        await open_tab(page, "agenda")
    # Observers do not submit: no form.
    await expect(obs.locator("#suggestion-form")).to_be_hidden()
    # The member picks the second agenda item and a category, and submits.
    form = m1.locator("#suggestion-form")
    await expect(form).to_be_visible()
    await form.locator("#suggestion-item").select_option("1")
    await form.locator("#suggestion-category").select_option("environment")
    await form.locator("#suggestion-title").fill(TITLE)
    await form.locator("#suggestion-body").fill(BODY)
    await form.locator("#suggestion-department").fill("市生态环境局")
    await form.locator("button[type=submit]").click()
    await expect(m1.locator('[data-toast="suggestion-sent"]')).to_have_text(text["sent"])
    await expect(form.locator("#suggestion-title")).to_have_value("")
    # The author sees their own; the host sees it under the second item, with its category.
    mine = m1.locator('#suggestions-list [data-agenda-index="1"] [data-suggestion]')
    await expect(mine).to_contain_text(TITLE)
    group = host.locator('#suggestions-list [data-agenda-index="1"]')
    await expect(group.locator(".suggestion-group-title")).to_have_text(text["heading"])
    item = group.locator("[data-suggestion]")
    await expect(item).to_have_count(1)
    for shown in (TITLE, BODY, text["category"], "张委员", "市生态环境局"):
        await expect(item).to_contain_text(shown)
    await expect(host.locator('#suggestions-list [data-agenda-index="0"]')).to_have_count(0)
    await item.scroll_into_view_if_needed()
    await screenshot(host, f"suggestions-host-{lang}")
    # Nobody else has it, on screen or in the page's model.
    assert TITLE not in await obs.locator("#room").inner_text()
    assert await obs.evaluate("() => window.yitang.store.suggestions.size") == 0
    pages.assert_no_page_errors()


async def test_a_member_submits_before_the_session_from_the_join_page(
    pages: PageFactory, server: ApiHandle, room: Participants
) -> None:
    # The member opens the link but does not enter: the session has not started.
    m1 = await pages.new_page(lang="zh")
    await m1.goto(room.m1.url)
    details = m1.locator("#prejoin-suggestion")
    await expect(details).to_be_visible()
    await details.locator("summary").click()
    form = details.locator("form")
    await form.locator("[name=agenda_index]").select_option("2")
    await form.locator("[name=category]").select_option("livelihood")
    await form.locator("[name=title]").fill(TITLE)
    await form.locator("[name=body]").fill(BODY)
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".prejoin-suggestion-result")).to_have_text("建议已提交")
    _, detail = await server.request("GET", f"/api/rooms/{room.room_id}")
    assert detail["live"]["status"] == "scheduled"
    # An observer's link offers no such form.
    obs = await pages.new_page(lang="zh")
    await obs.goto(room.obs.url)
    await expect(obs.locator("#enter-button")).to_be_enabled()
    await expect(obs.locator("#prejoin-suggestion")).to_be_hidden()
    # The host, entering later, finds it under the third item, marked as before the session.
    host = await pages.join(room.host, lang="zh")
    await open_tab(host, "agenda")
    item = host.locator('#suggestions-list [data-agenda-index="2"] [data-suggestion]')
    await expect(item).to_contain_text(TITLE)
    await expect(item).to_contain_text("民生保障")
    pages.assert_no_page_errors()
