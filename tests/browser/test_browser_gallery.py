"""The public gallery in the browser (zh and en): an observer posts a question, it reaches
only the host until approved; approved, every participant shows it; on screen, everyone sees
it over the stage; an answer follows it."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import PageFactory, Participants, enter, open_tab, screenshot
from tests.helpers import ApiHandle

TEXT = {
    "zh": {"pending": "待审核 1 条", "sent": "已提交，待主持人审核", "answer": "答复：明年开工"},
    "en": {
        "pending": "1 waiting for approval",
        "sent": "Submitted; waiting for the host's approval",
        "answer": "Answer: 明年开工",
    },
}
QUESTION = "清水塘片区何时开工？"


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_an_observers_question_is_shown_only_after_the_host_approves_it(
    pages: PageFactory, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    host = await pages.join(room.host, lang=lang)
    m1 = await pages.join(room.m1, lang=lang)
    obs = await pages.join(room.obs, lang=lang)
    for page in (host, m1, obs):
        await open_tab(page, "gallery")
    # The observer posts with a name and a district.
    await obs.locator("#gallery-text").fill(QUESTION)
    await obs.locator("#gallery-name").fill("王女士")
    await obs.locator("#gallery-district").fill("石峰区")
    await obs.locator("#gallery-form button[type=submit]").click()
    await expect(obs.locator('[data-toast="gallery-sent"]')).to_have_text(text["sent"])
    await expect(obs.locator("#gallery-text")).to_have_value("")
    # The host sees it waiting, with the buttons to moderate it.
    pending = host.locator("[data-pending]")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text(QUESTION)
    await expect(host.locator("#gallery-pending-count")).to_have_text(text["pending"])
    await screenshot(host, f"gallery-pending-{lang}")
    # Not approved: nobody else has it, on screen or in the page's model.
    for page in (m1, obs):
        await expect(page.locator("#gallery-queue")).to_be_hidden()
        assert QUESTION not in await page.locator("#room").inner_text()
        assert await page.evaluate("() => window.yitang.store.gallery.size") == 0
    # Approved: every participant shows it, with the poster's name and district.
    await pending.locator(".gallery-approve").click()
    await expect(host.locator("[data-pending]")).to_have_count(0)
    for page in (host, m1, obs):
        item = page.locator("#gallery-list [data-gallery]")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text(QUESTION)
        await expect(item).to_contain_text("王女士")
        await expect(item).to_contain_text("石峰区")
    # Members and observers cannot moderate: no buttons for them.
    await expect(m1.locator("#gallery-list .gallery-show")).to_have_count(0)
    # On screen: highlighted over the stage for everyone; then answered.
    await host.locator("#gallery-list .gallery-show").click()
    for page in (m1, obs):
        banner = page.locator("#gallery-banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text(QUESTION)
    await host.locator("#gallery-list .gallery-answer-button").click()
    await host.locator("#prompt-dialog .dialog-input").fill("明年开工")
    await host.locator("#prompt-dialog .dialog-confirm").click()
    for page in (m1, obs):
        await expect(page.locator("#gallery-banner")).to_contain_text(text["answer"])
        await expect(page.locator("#gallery-list [data-gallery]")).to_contain_text(text["answer"])
    await screenshot(m1, f"gallery-on-screen-{lang}")
    pages.assert_no_page_errors()


async def test_a_moderator_runs_the_gallery_and_the_speaking_queue_only(
    pages: PageFactory, server: ApiHandle, room: Participants
) -> None:
    token = await server.token(room.room_id, "mod", "moderator", "zhuzhou", name="赵主持")
    mod = await pages.new_page(lang="zh")
    await mod.goto(f"{server.base_url}/join?token={token}")
    await enter(mod)
    m1 = await pages.join(room.m1, lang="zh")
    obs = await pages.join(room.obs, lang="zh")
    # The moderator's console: the speaking queue, no agenda, lock, recording, end or lobby.
    await expect(mod.locator("#host-console h2")).to_have_text("主持台（议政主持）")
    for absent in ("#host-end", "#host-record", "#host-lock", "#host-next-item", "#host-mute-all"):
        await expect(mod.locator(absent)).to_have_count(0)
    # A raised hand: the moderator gives the floor from the queue.
    await m1.locator("#hand-button").click()
    await open_tab(mod, "queue")
    await mod.locator('.grant[data-identity="m1"]').click()
    await expect(m1.locator("#floor-notice")).to_be_visible()
    # The gallery: an observer's question, approved by the moderator, reaches the member.
    await obs.evaluate(f"() => window.yitang.call('gallery_post', {{text: {QUESTION!r}}})")
    await open_tab(mod, "gallery")
    await mod.locator("[data-pending] .gallery-approve").click()
    await open_tab(m1, "gallery")
    await expect(m1.locator("#gallery-list [data-gallery]")).to_contain_text(QUESTION)
    pages.assert_no_page_errors()
