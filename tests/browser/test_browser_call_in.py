"""A viewer of the live broadcast asks to speak (连线申请) in real Chromium, and goes on stage.

The viewer (anonymous, a `public` broadcast) asks from /live; the request appears in the
host's page; the host invites it; the viewer's page offers the invitation, the viewer
accepts, and the page enters the room by itself (device check with the fake camera and
microphone), takes the seat without being asked again, publishes with the floor and is
seen in the host's spotlight (its decoded frames rise). The host ends the connection: the
viewer is an observer again, with the way back to the broadcast.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import PageFactory, Person, enter, js, screenshot
from tests.helpers import ROOM_SPEC, ApiHandle

TEXT = {
    "zh": {"pending": "已申请连线，等待主持人安排。", "invite": "邀请连线", "back": "返回直播"},
    "en": {
        "pending": "Request sent: waiting for the host.",
        "invite": "Invite on stage",
        "back": "Back to the broadcast",
    },
}


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_viewer_asks_to_speak_goes_on_stage_and_returns(
    server: ApiHandle, pages: PageFactory, lang: str
) -> None:
    text = TEXT[lang]
    status, room = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "broadcast": "public"})
    assert status == 201, room
    room_id = room["id"]
    token = await server.token(room_id, "host", "host", "hunan", "李主持")
    host = Person("host", "李主持", "host", "hunan", "湖南省政协主会场", "provincial",
                  f"{server.base_url}/join?token={token}")  # fmt: skip
    host_page = await pages.join(host, lang=lang)

    viewer = await pages.new_page(lang=lang)
    await viewer.goto(f"{server.base_url}/live/{room_id}")
    await viewer.fill("#live-call-in-name", "王小明")
    await viewer.fill("#live-call-in-district", "石峰区")
    await viewer.fill("#live-call-in-note", "想谈谈社区养老")
    await viewer.click("#live-call-in-send")
    await expect(viewer.locator("#live-call-in-status")).to_have_text(text["pending"])
    await expect(viewer.locator("#live-call-in-form")).to_be_hidden()

    # The host sees the request (name, district, note) and invites it.
    request = host_page.locator('#call-in-queue .call-in-item[data-status="pending"]')
    await expect(request).to_contain_text("王小明 · 石峰区")
    await expect(request).to_contain_text("想谈谈社区养老")
    invite = request.locator(".call-in-invite")
    await expect(invite).to_have_text(text["invite"])
    await screenshot(host_page, f"call-in-host-{lang}")
    await invite.click()
    await expect(host_page.locator("#stage-host-line")).to_contain_text("王小明")

    # The viewer's page learns of it, the viewer accepts: the page enters the room.
    await expect(viewer.locator("#live-call-in-invited")).to_be_visible(timeout=20_000)
    await screenshot(viewer, f"call-in-viewer-{lang}")
    await viewer.click("#live-call-in-accept")
    await viewer.wait_for_url("**/join?token=*&call_in=1")
    await expect(viewer.locator("#device-setup")).to_be_visible()
    await enter(viewer)
    identity = await js(viewer, "() => window.yitang.store.myIdentity")
    assert identity.startswith("callin-")
    # Already accepted on the broadcast page: no second question, straight on stage.
    await expect(viewer.locator("body")).to_have_attribute("data-stage", "on_stage")
    await expect(viewer.locator("#stage-prompt")).to_be_hidden()
    assert await js(viewer, "() => window.yitang.store.you.role") == "guest"

    # Seen by the host: the viewer holds the floor; its video plays in the spotlight.
    spotlight = host_page.locator("#spotlight")
    await expect(spotlight).to_have_attribute("data-identity", identity)
    await expect(spotlight.locator("video")).to_have_attribute("data-playing", "true")
    first = await js(
        host_page, "() => Number(document.querySelector('#spotlight video').dataset.frames)"
    )
    await host_page.wait_for_function(
        "n => Number(document.querySelector('#spotlight video').dataset.frames) > n + 10",
        arg=first,
    )

    # The host ends it: an observer again, devices let go, the way back offered.
    await host_page.locator("#stage-end").click()
    await viewer.wait_for_function(
        "() => window.yitang.store.you.role === 'observer' && !window.yitang.media.pubPc"
        " && !window.yitang.media.localStream"
    )
    await expect(viewer.locator("body")).to_have_attribute("data-stage", "")
    back = viewer.locator("#stage-back-live")
    await expect(back).to_have_text(text["back"])
    await expect(back).to_have_attribute("href", f"/live/{room_id}")
    await expect(spotlight).not_to_have_attribute("data-identity", identity)


async def test_a_withdrawn_invitation_lets_the_camera_go(
    server: ApiHandle, pages: PageFactory
) -> None:
    """The host withdraws the invitation after the viewer accepted, before the page enters:
    the page is an observer, not on stage, and lets go of the camera its device check took."""
    status, room = await server.request("POST", "/api/rooms", {**ROOM_SPEC, "broadcast": "public"})
    assert status == 201, room
    room_id = room["id"]
    token = await server.token(room_id, "host", "host", "hunan", "李主持")
    host = Person("host", "李主持", "host", "hunan", "湖南省政协主会场", "provincial",
                  f"{server.base_url}/join?token={token}")  # fmt: skip
    host_page = await pages.join(host)
    viewer = await pages.new_page()
    await viewer.goto(f"{server.base_url}/live/{room_id}")
    await viewer.fill("#live-call-in-name", "王小明")
    await viewer.click("#live-call-in-send")
    await host_page.locator("#call-in-queue .call-in-invite").click()
    await expect(viewer.locator("#live-call-in-invited")).to_be_visible(timeout=20_000)
    await viewer.click("#live-call-in-accept")
    await viewer.wait_for_url("**/join?token=*&call_in=1")
    await expect(viewer.locator("#device-setup")).to_be_visible()
    withdraw = host_page.locator("#stage-end")
    await expect(host_page.locator("#stage-host-line")).to_contain_text("王小明")
    await withdraw.click()
    await expect(host_page.locator("#stage-host-line")).to_be_hidden()

    await enter(viewer)
    await viewer.wait_for_function(
        "() => window.yitang.store.you.role === 'observer' && !window.yitang.media.localStream"
    )
    await expect(viewer.locator("body")).to_have_attribute("data-stage", "")
    await expect(viewer.locator("#stage-prompt")).to_be_hidden()
    await expect(viewer.locator("#stage-back-live")).to_be_visible()
