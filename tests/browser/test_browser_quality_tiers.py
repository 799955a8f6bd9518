"""Quality per receiver in real browsers: each camera goes out twice (high and ~320x180),
and a viewer plays the stage at the high resolution and tiles at the low one."""

from __future__ import annotations

from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.support import PageFactory, Participants

MEDIA_WAIT_MS = 30_000
LOW_WIDTH = 320


async def video_width(page: Page, selector: str) -> int:
    return int(await page.evaluate("s => document.querySelector(s)?.videoWidth || 0", selector))


async def wait_width(page: Page, selector: str, predicate: str) -> None:
    """Wait until the <video>'s videoWidth `w` satisfies the JS expression `predicate`."""
    try:
        await page.wait_for_function(
            "([s]) => { const w = document.querySelector(s)?.videoWidth || 0; "
            f"return {predicate}; }}",
            arg=[selector],
            timeout=MEDIA_WAIT_MS,
        )
    except PlaywrightTimeoutError:
        widths = await page.evaluate(
            "() => [...document.querySelectorAll('video')].map(v => "
            "[v.closest('[id]')?.id, v.dataset.identity || v.closest('.tile')?.dataset.identity, "
            "v.videoWidth])"
        )
        level = await page.evaluate(
            "() => document.getElementById('bandwidth-notice')?.dataset.level || null"
        )
        raise AssertionError(
            f"{selector}: not {predicate}; the page's videos: {widths}; link level {level}"
        ) from None


async def test_stage_plays_high_and_tiles_play_low(pages: PageFactory, room: Participants) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    m2 = await pages.join(room.m2)
    # No floor: the host is on the stage; members are tiles.
    stage = '#spotlight video[data-identity="host"]'
    tile = '#tile-groups .tile[data-identity="m2"] video'
    await wait_width(m1, stage, f"w > {LOW_WIDTH}")
    await wait_width(m1, tile, f"w > 0 && w <= {LOW_WIDTH}")
    # The publisher sends the low encoding as a second track of its publish connection.
    sending = await m2.evaluate(
        "() => window.yitang.media.pubPc.getTransceivers()"
        ".filter(t => t.sender.track && t.sender.track.kind === 'video').length"
    )
    assert sending == 2

    # The floor passes to m2: on m1's screen m2 moves to the stage in high, the host to a
    # small tile in low, without a new subscriber offer.
    await host.evaluate("() => window.yitang.call('grant_floor', {identity: 'm2'})")
    await wait_width(m1, '#spotlight video[data-identity="m2"]', f"w > {LOW_WIDTH}")
    await wait_width(
        m1, '#host-slot .tile[data-identity="host"] video', f"w > 0 && w <= {LOW_WIDTH}"
    )
    assert await video_width(m1, '#spotlight video[data-identity="m2"]') > LOW_WIDTH
