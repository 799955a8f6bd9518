"""A receiver's own layout in real browsers: pinning a tile into MY spotlight brings that
camera in the high encoding and the floor holder's in the low one, for me only; the pin
survives a reload and goes when the pinned participant leaves; a shared screen comes before
it, a host pinning someone for everyone ends it; "stage only" folds the tiles away and their
video stops coming."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from tests.browser.support import PHONE, PageFactory, Participants, enter, screenshot
from tests.browser.test_browser_screen_share import FAKE_DISPLAY

#: How long video may take to arrive or to switch encodings. Generous: on a machine loaded
#: far beyond its cores the first keyframe of a new receiver has been seen to take 30 s.
MEDIA_WAIT_MS = 60_000
SPOTLIGHT = "#spotlight video"
HOST_TILE = '#host-slot .tile[data-identity="host"]'


def grid_tile(identity: str) -> str:
    return f'#tile-groups .tile[data-identity="{identity}"]'


#: What a publisher's camera sends now: the frame widths of its high and low encodings.
_ENCODING_WIDTHS = """async () => {
  const pair = window.yitang.media._cameraEncodings;
  const width = async (transceiver) => {
    let w = 0;
    (await transceiver.sender.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp") w = s.frameWidth || 0;
    });
    return w;
  };
  return pair ? [await width(pair.camera), await width(pair.low)] : [0, 0];
}"""


async def expect_encoding(receiver: Page, video: str, publisher: Page, encoding: str) -> None:
    """The <video> plays the publisher's `encoding` ("high" or "low"): its width is the one
    that encoding sends now, and the other sends another. Against the publisher's own
    widths, not fixed ones: on a busy machine Chromium scales its encodings down (CPU), and
    the server's `publisher_hint` caps the high one when it sees loss."""
    deadline = asyncio.get_running_loop().time() + MEDIA_WAIT_MS / 1000
    seen: tuple[int, int, int] = (0, 0, 0)
    while asyncio.get_running_loop().time() < deadline:
        high, low = await publisher.evaluate(_ENCODING_WIDTHS)
        width = int(
            await receiver.evaluate("s => document.querySelector(s)?.videoWidth || 0", video)
        )
        seen = (width, high, low)
        if high > low > 0 and width == (high if encoding == "high" else low):
            return
        await asyncio.sleep(0.2)
    videos = await receiver.evaluate(
        "() => [...document.querySelectorAll('video')].map(v => "
        "[v.dataset.identity || v.closest('.tile')?.dataset.identity, v.videoWidth])"
    )
    raise AssertionError(
        f"{video}: not the {encoding} encoding; (width, high, low) = {seen}; "
        f"the receiver's videos {videos}; the page's pin: "
        f"{await receiver.evaluate('() => window.yitang.view.pinnedView()')}"
    )


async def expect_stage(page: Page, identity: str, publisher: Page) -> None:
    """`identity` is on the page's stage, playing in the high encoding."""
    await expect(page.locator("#spotlight")).to_have_attribute("data-identity", identity)
    await expect_encoding(page, f'{SPOTLIGHT}[data-identity="{identity}"]', publisher, "high")


async def expect_low(page: Page, tile: str, publisher: Page) -> None:
    """The tile plays, in the low encoding."""
    await expect_encoding(page, f"{tile} video", publisher, "low")


async def expect_frames_stop(page: Page, identity: str) -> None:
    """No more video frames of `identity` arrive (none decoded for 2 s on end)."""
    await page.wait_for_function(
        """async (identity) => {
          const frames = await window.yitang.media.framesDecoded(identity);
          const last = window.__framesSeen;
          if (!last || last.identity !== identity || last.frames !== frames) {
            window.__framesSeen = {identity, frames, since: performance.now()};
            return false;
          }
          return performance.now() - last.since >= 2000;
        }""",
        arg=identity,
        polling=250,
        timeout=MEDIA_WAIT_MS,
    )


async def test_my_pin_brings_that_camera_high_for_me_only(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    m2 = await pages.join(room.m2)
    await host.evaluate("() => window.yitang.call('grant_floor', {identity: 'm2'})")
    # The room's stage: the floor holder high, the host beside it low.
    await expect_stage(m1, "m2", m2)
    await expect_low(m1, HOST_TILE, host)
    await expect(m1.locator(f"{grid_tile('m1')} .tile-pin")).to_be_hidden()  # not my own

    # m1 pins the host from its tile, with the keyboard: on m1's screen the host goes to the
    # stage in high and the floor holder to a tile in low.
    pin = m1.locator(f"{HOST_TILE} .tile-pin")
    await expect(pin).to_have_attribute("aria-label", "在本机放大显示 李主席（仅自己可见）")
    await pin.focus()
    await m1.keyboard.press("Enter")
    await expect_stage(m1, "host", host)
    await expect_low(m1, grid_tile("m2"), m2)
    await expect(m1.locator("#spotlight .tile-status")).to_have_text("本机放大")
    unpin = m1.locator("#spotlight-unpin")
    await expect(unpin).to_be_focused()
    await expect(unpin).to_have_text("恢复会场主画面")
    # Nobody else's view changed: the host still sees the floor holder high, m2 the host low.
    await expect_stage(host, "m2", m2)
    await expect_low(m2, HOST_TILE, host)
    await screenshot(m1, "my-pin-desktop-zh")

    # A reload (the rejoin) keeps the pin: the page sends it again after joining.
    await m1.reload()
    await enter(m1)
    await expect_stage(m1, "host", host)
    await expect_low(m1, grid_tile("m2"), m2)

    # Back to the room's stage.
    await m1.locator("#spotlight-unpin").click()
    await expect_stage(m1, "m2", m2)
    await expect_low(m1, HOST_TILE, host)
    await expect(m1.locator("#spotlight-unpin")).to_be_hidden()
    await expect(m1.locator(f"{HOST_TILE} .tile-pin")).to_be_focused()

    # m1 pins m2 with the floor free (the host is the room's stage); m2 leaves: the pin goes
    # with them, and the server is told: the host comes back to m1's stage in high.
    await host.evaluate("() => window.yitang.call('revoke_floor', {})")
    await expect_stage(m1, "host", host)
    await m1.locator(f"{grid_tile('m2')} .tile-pin").click()
    await expect_stage(m1, "m2", m2)
    await expect_low(m1, HOST_TILE, host)
    await m2.locator("#leave-button").click()
    await expect_stage(m1, "host", host)
    assert await m1.evaluate("() => window.yitang.view.pin.identity") is None


async def test_stage_only_stops_tile_video_and_pins_work_on_a_phone(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m2 = await pages.join(room.m2)
    phone = await pages.join(room.m1, viewport=PHONE, lang="en")
    await expect_stage(phone, "host", host)
    await expect_low(phone, grid_tile("m2"), m2)

    # "Stage only": the tiles fold away and m2's video stops coming; the stage plays on.
    toggle = phone.locator("#tiles-toggle")
    await expect(toggle).to_have_text("Stage only")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(phone.locator("#tile-groups")).to_be_hidden()
    await expect_frames_stop(phone, "m2")
    await expect_stage(phone, "host", host)
    # Shown again: m2 plays again, in the low encoding.
    await toggle.click()
    await expect(toggle).to_have_text("Stage only")
    await expect_low(phone, grid_tile("m2"), m2)

    # At phone width the pin is a button on the tile like on a desktop.
    await phone.locator(f"{grid_tile('m2')} .tile-pin").click()
    await expect_stage(phone, "m2", m2)
    await expect_low(phone, HOST_TILE, host)
    await expect(phone.locator("#spotlight-unpin")).to_have_text("Back to the room's stage")
    await screenshot(phone, "my-pin-phone-en")
    # m2 and the host still see the room's stage (the host) in high.
    await expect_stage(m2, "host", host)
    assert await host.locator("#spotlight").get_attribute("data-identity") == "host"


async def test_a_room_pin_ends_mine_and_a_shared_screen_comes_first(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.new_page()
    await host.context.add_init_script(FAKE_DISPLAY)
    await host.goto(room.host.url)
    await enter(host)
    m1 = await pages.join(room.m1)
    m2 = await pages.join(room.m2)
    pin_m2 = m1.locator(f"{grid_tile('m2')} .tile-pin")
    await pin_m2.click()
    await expect_stage(m1, "m2", m2)

    # A host pins someone for everyone: that ends m1's own pin, and m1 is told.
    await host.evaluate("() => window.yitang.call('pin', {identity: 'host'})")
    await expect_stage(m1, "host", host)
    await expect(m1.locator("#spotlight .tile-status")).to_have_text("主持人置顶")
    told = "主持人已将 李主席 置顶，已取消您的本机放大"
    await expect(m1.locator("#toasts")).to_contain_text(told)
    await expect_low(m1, grid_tile("m2"), m2)
    await expect(pin_m2).to_have_attribute("aria-pressed", "false")
    # Pinned again afterwards, m1's own pin comes before the room's.
    await pin_m2.click()
    await expect_stage(m1, "m2", m2)
    await expect_low(m1, HOST_TILE, host)

    # The host shares a screen: it takes m1's stage too, and m1's pin is not sent while the
    # screen is shown (m2, back in a tile, comes in low), but it is kept.
    await host.locator("#share-button").click()
    await expect(m1.locator("#spotlight")).to_have_attribute("data-screen", "true")
    await expect(m1.locator("#spotlight")).to_have_attribute("data-identity", "host")
    await expect(m1.locator("#screen-pip video")).to_have_attribute("data-playing", "true")
    await expect_low(m1, grid_tile("m2"), m2)
    await expect(pin_m2).to_have_attribute("aria-pressed", "true")
    # The sharing ends: m1's own pin is back.
    await host.locator("#share-button").click()
    await expect(m1.locator("#spotlight")).to_have_attribute("data-screen", "false")
    await expect_stage(m1, "m2", m2)
