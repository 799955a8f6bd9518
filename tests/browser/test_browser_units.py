"""The browser modules' pure logic, run in Chromium: the session model's idempotent updates,
spotlight choice and clock correction, countdown formatting, token decoding, quality
classification and translation fallbacks, the `video_view` reporter and the kept pin."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from tests.browser.support import PageFactory
from tests.helpers import ApiHandle


async def _module_page(pages: PageFactory, server: ApiHandle) -> Page:
    page = await pages.new_page()
    await page.goto(server.base_url + "/")
    return page


async def _run(page: Page, body: str) -> Any:
    return await page.evaluate(f"async () => {{ {body} }}")


async def test_session_store_applies_events_idempotently(
    pages: PageFactory, server: ApiHandle
) -> None:
    page = await _module_page(pages, server)
    result = await _run(
        page,
        """
        const { SessionStore } = await import('/static/js/state.js');
        const p = (identity, role, venue) => ({identity, name: identity, role, venue,
            session: 's-' + identity, node: 'n', joined_at: 1, audio_muted: false,
            video_muted: false});
        const live = (version, floor = null) => ({status: 'live', floor, queue: [],
            agenda_index: 0, locked: false, recording: false, version});
        const store = new SessionStore();
        store.reset({
            room: {id: 'r', title: 't', topic: '', scheduled_start: '', created_at: '',
                   venues: [{id: 'a', name: 'A', level: 'city', main: false},
                            {id: 'b', name: 'B', level: 'national', main: true}],
                   agenda: []},
            you: p('m1', 'member', 'a'), participants: [p('host', 'host', 'b')],
            roster: [], live: live(5), timeline: [{id: '1-0', ts: 1, type: 'joined', data: {}}],
            server_time: 1000000,
        }, 2500);
        const out = {};
        out.spotlightFree = store.spotlightIdentity();
        store.apply('participant_joined', p('m2', 'member', 'a'));
        store.apply('participant_joined', p('m2', 'member', 'a'));
        out.count = store.participants.size;
        store.apply('live_state', live(7, {identity: 'm2', grant_id: 'g',
                                            granted_at: 0, deadline: Date.now() + 2500 + 60000}));
        store.apply('live_state', live(6));  // stale: ignored
        out.version = store.live.version;
        out.spotlightFloor = store.spotlightIdentity();
        out.remaining = Math.round(store.floorRemainingMs() / 1000);
        store.apply('timeline', {id: '1-0', ts: 1, type: 'joined', data: {}});
        store.apply('timeline', {id: '2-0', ts: 2, type: 'chat', data: {}});
        out.timeline = store.timeline.length;
        store.apply('participant_left', {identity: 'm2', reason: 'left'});
        store.apply('participant_left', {identity: 'm2', reason: 'left'});
        out.afterLeft = store.participants.size;
        out.venues = store.venuesByLevel().map(v => v.id);
        return out;
        """,
    )
    assert result == {
        "spotlightFree": "host",
        "count": 3,
        "version": 7,
        "spotlightFloor": "m2",
        "remaining": 60,
        "timeline": 2,
        "afterLeft": 2,
        "venues": ["b", "a"],
    }


async def test_formatting_tokens_quality_and_translations(
    pages: PageFactory, server: ApiHandle
) -> None:
    page = await _module_page(pages, server)
    result = await _run(
        page,
        """
        const util = await import('/static/js/util.js');
        const quality = await import('/static/js/quality.js');
        const i18n = await import('/static/js/i18n.js');
        const payload = btoa(String.fromCharCode(...new TextEncoder().encode(
            JSON.stringify({sub: 'm1', name: '张委员', role: 'member'}))))
            .replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
        const q = (o, v) => quality.classifyQuality(
            {sampled: true, packets: 100, hasVideo: true, fps: 25, loss: 0, rttMs: 20, ...o},
            {expectVideo: v ?? true});
        return {
            countdown: [61000, 1500, 0, -5000].map(util.formatCountdown),
            token: util.decodeJwtPayload('x.' + payload + '.y'),
            badToken: util.decodeJwtPayload('nonsense'),
            initials: [util.initials('张委员'), util.initials('Li Ming')],
            quality: [q({}), q({loss: 0.05}), q({loss: 0.2}), q({rttMs: 500}), q({fps: 5}),
                      q({fps: 0}, false), q({packets: 0}),
                      quality.classifyQuality({sampled: false})],
            text: [i18n.t('host.limit_minutes', {n: 3}), i18n.errorText('queue_empty', 'x'),
                   i18n.errorText('strange_code', 'server said no')],
        };
        """,
    )
    assert result == {
        "countdown": ["1:01", "0:02", "0:00", "0:00"],
        "token": {"sub": "m1", "name": "张委员", "role": "member"},
        "badToken": None,
        "initials": ["张", "LM"],
        "quality": ["good", "fair", "poor", "fair", "fair", "good", "poor", "unknown"],
        "text": ["3 分钟", "没有发言申请", "操作失败：server said no"],
    }


async def test_video_view_reports_changes_once_and_the_pin_is_kept_per_session(
    pages: PageFactory, server: ApiHandle
) -> None:
    page = await _module_page(pages, server)
    result = await _run(
        page,
        """
        const { VideoViewReporter } = await import('/static/js/quality-tiers.js');
        const { LocalPin } = await import('/static/js/local-pin.js');
        const sent = [];
        const reporter = new VideoViewReporter([], (payload) => sent.push(payload));
        reporter.setPinned('m2');
        reporter.setPinned('m2');  // no change: not sent again
        reporter.setCollapsed(true);
        reporter.setPinned(null, {send: false});
        reporter.resend();  // after a join: the whole view, whatever was sent before
        const out = {sent};

        const pin = new LocalPin();
        pin.load('room-a', 'm1');
        out.fresh = pin.identity;
        out.changed = [pin.set('host'), pin.set('host')];
        const again = new LocalPin();
        again.load('room-a', 'm1');
        out.reloaded = again.identity;
        const other = new LocalPin();
        other.load('room-b', 'm1');
        out.otherRoom = other.identity;
        sessionStorage.setItem('yitang.pin.room-c/m1', 'x'.repeat(200));
        other.load('room-c', 'm1');
        out.junk = other.identity;
        again.set(null);
        const cleared = new LocalPin();
        cleared.load('room-a', 'm1');
        out.cleared = cleared.identity;
        return out;
        """,
    )
    assert result == {
        "sent": [
            {"pinned": "m2", "tiles_visible": True},
            {"pinned": "m2", "tiles_visible": False},
            {"pinned": None, "tiles_visible": False},
        ],
        "fresh": None,
        "changed": [True, False],
        "reloaded": "host",
        "otherRoom": None,
        "junk": None,
        "cleared": None,
    }
