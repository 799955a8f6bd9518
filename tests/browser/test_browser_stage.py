"""连线 in the browser (zh and en): an observer asks to be connected, the host invites them on
stage, the observer's page asks for the camera and microphone and publishes, the host and a
member see the guest's video playing in the spotlight, and the host ends the connection: the
guest's tracks end everywhere and its page is an observer again."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import PageFactory, Participants, js, open_tab, screenshot

TEXT = {
    "zh": {
        "invite": "邀请连线",
        "prompt": "主持人邀请您连线发言",
        "on": "连线中",
        "end": "结束连线",
    },
    "en": {
        "invite": "Invite on stage",
        "prompt": "The host invites you on stage",
        "on": "On stage",
        "end": "End connection",
    },
}


async def _sees_guest(page: Page, identity: str) -> None:
    spotlight = page.locator("#spotlight")
    await expect(spotlight).to_have_attribute("data-identity", identity)
    await expect(spotlight.locator("video")).to_have_attribute("data-playing", "true")
    await page.wait_for_function(
        "() => Number(document.querySelector('#spotlight video').dataset.frames) > 10"
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_an_observer_is_brought_on_stage_seen_by_all_and_returned(
    pages: PageFactory, room: Participants, lang: str
) -> None:
    text = TEXT[lang]
    host = await pages.join(room.host, lang=lang)
    member = await pages.join(room.m1, lang=lang)
    observer = await pages.join(room.obs, lang=lang)
    obs = room.obs.identity

    # The observer asks to be connected; the host answers from the queue.
    await observer.locator("#hand-button").click()
    await open_tab(host, "queue")
    invite = host.locator(f'#panel-queue .stage-invite[data-identity="{obs}"]')
    await expect(invite).to_have_text(text["invite"])
    await invite.click()

    prompt = observer.locator("#stage-prompt")
    await expect(prompt).to_be_visible()
    await expect(prompt.locator("h2")).to_have_text(text["prompt"])
    await observer.locator("#stage-accept").click()
    await expect(observer.locator("body")).to_have_attribute("data-stage", "on_stage")
    await expect(observer.locator("#stage-badge")).to_contain_text(text["on"])
    await expect(prompt).to_be_hidden()
    assert await js(observer, "() => window.yitang.store.you.role") == "guest"
    await expect(observer.locator("#mic-button")).to_be_visible()

    # Seen by all: the guest holds the floor, so its video plays in every spotlight.
    await _sees_guest(host, obs)
    await _sees_guest(member, obs)
    await expect(host.locator("#stage-host-line")).to_contain_text(room.obs.name)
    await screenshot(host, f"stage-host-{lang}")
    await screenshot(observer, f"stage-guest-{lang}")

    # The host ends the connection: the guest is off everyone's screen, an observer again.
    end = host.locator("#stage-end")
    await expect(end).to_have_text(text["end"])
    await end.click()
    await expect(observer.locator("body")).to_have_attribute("data-stage", "")
    await expect(observer.locator("#stage-badge")).to_be_hidden()
    await expect(observer.locator("#observer-tag")).to_be_visible()
    await observer.wait_for_function(
        "() => window.yitang.store.you.role === 'observer' && !window.yitang.media.pubPc"
        " && !window.yitang.media.localStream"
    )
    for page in (host, member):
        await expect(page.locator("#spotlight")).not_to_have_attribute("data-identity", obs)
        await expect(page.locator(f'.tile[data-identity="{obs}"]')).to_have_count(0)
        await page.wait_for_function(
            "(id) => !window.yitang.media.remoteIdentities().includes(id)", arg=obs
        )
    await expect(host.locator("#stage-host-line")).to_be_hidden()


async def test_a_render_between_press_and_release_does_not_lose_the_click(
    pages: PageFactory, room: Participants
) -> None:
    """The room view renders on every change; a render must not replace a control's
    insides mid-click (the press would land on a node that is gone: no click). Beside a
    busy CPU an observer's "ask to connect" was lost this way."""
    host = await pages.join(room.host)
    observer = await pages.join(room.obs)
    label = await observer.locator("#hand-button .ctl-label").bounding_box()
    assert label is not None
    await observer.mouse.move(label["x"] + label["width"] / 2, label["y"] + label["height"] / 2)
    await observer.mouse.down()
    await js(observer, "() => window.yitang.view.render()")  # a change arrives mid-click
    await observer.mouse.up()
    await open_tab(host, "queue")
    invite = host.locator(f'#panel-queue .stage-invite[data-identity="{room.obs.identity}"]')
    await expect(invite).to_have_count(1)
