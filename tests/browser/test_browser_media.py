"""Media through the server in real browsers: every participant's camera reaches the others
(video frames decoded and presented), audio arrives, observers only receive, the active
speaker is highlighted, and media recovers after network loss or a media restart."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

from tests.browser.support import PageFactory, Participants, screenshot
from tests.helpers import ApiHandle

#: Frames that must be decoded on top of what was counted before (about 1 s of video).
MORE_FRAMES = 15
MEDIA_WAIT_MS = 20_000


async def frames_decoded(page: Page, identity: str) -> int:
    """Video frames decoded from `identity` so far (getStats on the subscribe connection)."""
    return int(await page.evaluate("id => window.yitang.media.framesDecoded(id)", identity))


async def expect_video_flowing(page: Page, identity: str) -> None:
    """Wait until more frames from `identity` are decoded than now (video is playing)."""
    start = await frames_decoded(page, identity)
    await page.wait_for_function(
        "async ([id, n]) => (await window.yitang.media.framesDecoded(id)) >= n",
        arg=[identity, start + MORE_FRAMES],
        timeout=MEDIA_WAIT_MS,
    )


async def expect_presented(page: Page, selector: str) -> None:
    """Wait until a <video> shows new frames (its requestVideoFrameCallback counter grows)."""
    video = page.locator(selector)
    await expect(video).to_have_attribute("data-playing", "true", timeout=MEDIA_WAIT_MS)
    start = int(await video.get_attribute("data-frames") or "0")
    await page.wait_for_function(
        "([sel, n]) => Number(document.querySelector(sel)?.dataset.frames || 0) >= n",
        arg=[selector, start + MORE_FRAMES],
        timeout=MEDIA_WAIT_MS,
    )


async def test_host_and_members_see_each_others_video(
    pages: PageFactory, room: Participants, server: ApiHandle
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    m2 = await pages.join(room.m2)
    browsers = {"host": host, "m1": m1, "m2": m2}
    for viewer, page in browsers.items():
        for publisher in browsers:
            if publisher != viewer:
                await expect_video_flowing(page, publisher)
        await expect(page.locator("#controls")).to_be_visible()
    # What a person sees: the host on the stage, members in their level groups.
    await expect_presented(m1, '#spotlight video[data-identity="host"]')
    await expect_presented(host, '#tile-groups .tile[data-identity="m1"] video')
    await expect_presented(host, '#tile-groups .tile[data-identity="m2"] video')
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_class(re.compile("has-video"))
    # Audio of everyone else plays from the audio sink.
    for viewer, page in browsers.items():
        others = sorted(set(browsers) - {viewer})
        await expect(page.locator("#audio-sink audio")).to_have_count(len(others))
        for identity in others:
            await expect(
                page.locator(f'#audio-sink audio[data-identity="{identity}"]')
            ).to_have_count(1)
    # Connection indicators come from getStats.
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_attribute(
        "data-quality", "good", timeout=MEDIA_WAIT_MS
    )
    await screenshot(host, "media-host-1280x720")
    # What Chromium negotiates: its DTLS-SRTP offers AEAD AES-GCM, so the RTP the node
    # sends each of the three browsers is protected by its compiled AES-GCM.
    protection = await outbound_srtp_transports(server)
    assert sum(protection.values()) == 3, protection
    assert {protector for protector, _ in protection} == {"compiled"}, protection


async def outbound_srtp_transports(server: ApiHandle) -> dict[tuple[str, str], float]:
    """The node's subscribe transports by (protector, profile), from its /metrics."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with server.http.get(server.base_url + "/metrics", headers=headers) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.labels["protector"], sample.labels["profile"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "yitang_outbound_srtp_transports"
    }


async def test_floor_holder_video_takes_the_stage(pages: PageFactory, room: Participants) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    m2 = await pages.join(room.m2)
    await host.evaluate("() => window.yitang.call('grant_floor', {identity: 'm2'})")
    await expect_presented(m1, '#spotlight video[data-identity="m2"]')
    await expect_presented(m1, '#host-slot .tile[data-identity="host"] video')
    await expect_presented(m2, '#spotlight video[data-identity="m2"]')  # own camera, local
    await screenshot(m1, "media-member-floor-1280x720")


async def test_observer_receives_but_never_publishes(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    obs = await pages.join(room.obs)
    await expect_video_flowing(obs, "host")
    await expect_presented(obs, '#spotlight video[data-identity="host"]')
    assert await obs.evaluate("() => window.yitang.media.pubPc") is None
    code = await obs.evaluate(
        """() => window.yitang.call('publish_offer', {sdp: 'v=0'}).then(() => 'ok', e => e.code)"""
    )
    assert code in ("publish_forbidden", "bad_sdp")
    # The host never receives anything from the observer.
    assert await host.evaluate("() => window.yitang.media.remote('obs')") is None


async def test_active_speaker_is_highlighted(pages: PageFactory, room: Participants) -> None:
    # The host enters with the microphone open (the fake microphone plays a steady tone);
    # members enter muted.
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await expect(m1.locator('#spotlight[data-identity="host"]')).to_have_attribute(
        "data-speaking", "true", timeout=MEDIA_WAIT_MS
    )
    await expect(host.locator("#spotlight")).to_have_class(re.compile("speaking"))
    # The member speaks, the host falls silent: the highlight moves to the member's tile.
    await m1.locator("#mic-button").click()
    await host.locator("#mic-button").click()
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_attribute(
        "data-speaking", "true", timeout=MEDIA_WAIT_MS
    )
    await expect(m1.locator("#spotlight")).to_have_attribute("data-speaking", "false")


async def test_media_recovers_after_network_loss(pages: PageFactory, room: Participants) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await expect_video_flowing(host, "m1")
    await m1.context.set_offline(True)
    await expect(m1.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")
    await m1.context.set_offline(False)
    await expect(m1.locator("#conn-status")).to_have_attribute("data-state", "connected")
    # Rejoined: new peer connections both ways.
    await expect_video_flowing(host, "m1")
    await expect_video_flowing(m1, "host")
    await expect_presented(m1, '#spotlight video[data-identity="host"]')


async def test_media_restart_rebuilds_both_connections(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await expect_video_flowing(m1, "host")
    old = await m1.evaluate("() => { window.__oldSub = window.yitang.media.subPc; return true; }")
    assert old
    await m1.evaluate("() => window.yitang.media.restart()")
    await m1.wait_for_function(
        "() => window.yitang.media.subPc && window.yitang.media.subPc !== window.__oldSub",
        timeout=MEDIA_WAIT_MS,
    )
    await expect_video_flowing(m1, "host")
    await expect_video_flowing(host, "m1")


async def test_leaving_participant_tracks_are_removed(
    pages: PageFactory, room: Participants
) -> None:
    host = await pages.join(room.host)
    m1 = await pages.join(room.m1)
    await expect_video_flowing(host, "m1")
    await expect(host.locator('#audio-sink audio[data-identity="m1"]')).to_have_count(1)
    await m1.locator("#leave-button").click()
    await expect(m1.locator("#ended-title")).to_have_text("您已离开会议")
    await host.wait_for_function(
        "() => window.yitang.media.remote('m1') === null", timeout=MEDIA_WAIT_MS
    )
    await expect(host.locator('#audio-sink audio[data-identity="m1"]')).to_have_count(0)
    await expect(host.locator('.tile[data-identity="m1"]')).to_have_count(0)
