"""The archive page shows a session's attendance and speaking record in Chinese and English;
clicking a speech (or a moment found by search) seeks the player there; deleting asks in a
translated dialog, not window.confirm.

The recording is made without a live session (synthetic track files, rendered in-process)
and its timeline extended with a member who joined and left, and an invitee who never came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, expect

from server.appkeys import RECORDING_SERVICE
from server.recording.compositor import RenderOptions, render_recording
from server.recording.manifest_files import write_manifest
from server.recording.models import Manifest, ParticipantEntry
from server.rooms.models import Level, TimelineEntry
from tests.browser.conftest import LOOP
from tests.helpers import ServerHandle
from tests.recording.recording_kit import PEOPLE, build_session, recording_server

RECORDING_ID = "room-1-20261201-090000-b0b0"
SUGGESTION = "社区养老服务"
VENUES = {
    "hunan": ("湖南省政协主会场", Level.PROVINCIAL),
    "shifeng": ("石峰区政协会场", Level.COUNTY),
    "zhuzhou": ("株洲市政协会场", Level.CITY),
    "national": ("全国政协会场", Level.NATIONAL),
}


@pytest_asyncio.fixture(loop_scope=LOOP)
async def archive_server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


@pytest_asyncio.fixture(loop_scope=LOOP)
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    yield page
    await context.close()
    assert errors == [] and dialogs == []  # no script errors, no window.confirm/alert


def _entry(identity: str) -> ParticipantEntry:
    name, role, venue = PEOPLE[identity]
    venue_name, level = VENUES[venue]
    return ParticipantEntry(
        identity=identity, name=name, role=role, venue=venue, venue_name=venue_name, level=level
    )


def with_attendance(manifest: Manifest) -> Manifest:
    """m2 joins at 1 s and leaves at 3 s; m3 is invited and never comes."""
    at = manifest.started_at
    extra = [
        TimelineEntry(
            id=f"{int((at + t) * 1000)}-5",
            ts=int((at + t) * 1000),
            type=kind,
            data={"identity": "m2", "name": "李明", "venue": "zhuzhou", "role": "member"},
        )
        for t, kind in ((1.0, "joined"), (3.0, "left"))
    ]
    # m2's micro-suggestion on the second agenda item.
    extra.append(
        TimelineEntry(
            id=f"{int((at + 2.0) * 1000)}-5",
            ts=int((at + 2.0) * 1000),
            type="suggestion_submitted",
            data={
                "id": "s1",
                "by": "m2",
                "name": "李明",
                "venue": "zhuzhou",
                "agenda_index": 1,
                "category": "livelihood",
                "department": "市民政局",
                "title": SUGGESTION,
                "body": "建议增设社区养老服务点",
                "submitted_at": (at + 2.0) * 1000,
            },
        )
    )
    return manifest.model_copy(
        update={
            "roster": [_entry(i) for i in ("host", "m1", "m2", "m3")],
            "present_at_start": ["host", "m1"],
            "timeline": sorted([*manifest.timeline, *extra], key=lambda e: e.ts),
        }
    )


async def test_archive_shows_the_record_in_both_languages_and_speeches_seek(
    archive_server: ServerHandle, page: Page, tmp_path: Path
) -> None:
    server = archive_server
    service = server.app[RECORDING_SERVICE]
    folder = service.config.recordings_dir / RECORDING_ID
    manifest = with_attendance(build_session(folder, 6.0, RECORDING_ID))
    write_manifest(folder, manifest)
    render_recording(folder, RenderOptions(width=640, height=360))
    assert [r.id for r in await service.recover()] == []  # indexes the finished folder

    await page.goto(server.base_url + "/archive")
    # Every string of the page is a key that exists in both languages.
    missing = await page.evaluate(
        """async () => {
            const i18n = await import('/static/js/i18n.js');
            const keys = i18n.allKeys();
            const zh = new Set(keys.zh), en = new Set(keys.en);
            const out = [];
            for (const el of document.querySelectorAll(
                '[data-i18n],[data-i18n-placeholder],[data-i18n-aria-label],[data-i18n-title]')) {
              for (const key of [el.dataset.i18n, el.dataset.i18nPlaceholder,
                                 el.dataset.i18nAriaLabel, el.dataset.i18nTitle]) {
                if (key && !(zh.has(key) && en.has(key))) out.push(key);
              }
            }
            return out;
        }"""
    )
    assert missing == []
    await page.fill("#api-key", server.api_key)
    await page.click("#key-form button[type=submit]")
    await page.locator(f'tr[data-recording-id="{RECORDING_ID}"]').click()
    card = page.locator("#detail-card")
    await expect(card).to_have_attribute("data-recording-id", RECORDING_ID)

    # Chinese (the default): attendance by level, the absent invitee, the speaking record.
    await expect(page.locator("#attendance-summary")).to_have_text(
        "应到 4 人，实到 3 人，缺席 1 人"
    )
    rows = page.locator("#attendance-body")
    await expect(rows.locator("tr.level-row").first).to_contain_text("全国")
    absent = rows.locator('tr[data-identity="m3"]')
    await expect(absent).to_have_attribute("data-status", "absent")
    await expect(absent).to_contain_text("王芳")
    await expect(absent).to_contain_text("缺席")
    await expect(rows.locator('tr[data-identity="m2"]')).to_contain_text("已离开")
    await expect(rows.locator('tr[data-identity="m2"] [data-field="present"]')).to_have_text("0:02")
    await expect(rows.locator('tr[data-identity="m1"]')).to_contain_text("在会至结束")
    speech = page.locator('.agenda-record[data-agenda-index="0"] li[data-identity="m1"]')
    await expect(speech).to_contain_text("陈静怡")
    await expect(speech).to_contain_text("主持人收回")
    await expect(page.locator('.agenda-record[data-agenda-index="1"]')).to_contain_text(
        "计划发言未发言：陈静怡"
    )
    await expect(page.locator("#speaking h4").first).to_have_text("1. 开场")
    # The member's suggestion, under its item, with its category, department and status.
    suggestion = page.locator('.agenda-record[data-agenda-index="1"] [data-suggestion="s1"]')
    for shown in (SUGGESTION, "民生保障", "李明", "市民政局", "已收到"):
        await expect(suggestion).to_contain_text(shown)

    # Clicking the speech seeks the player to its start.
    player = page.locator("#player")
    await expect(player).to_have_attribute("data-ready", "true")
    await page.evaluate("document.getElementById('player').muted = true")
    offset = float(await speech.get_attribute("data-offset") or "nan")
    assert abs(offset - 2.0) < 0.05
    await speech.locator("button").click()
    await page.wait_for_function(
        "([offset]) => { const v = document.getElementById('player');"
        " if (Math.abs(v.currentTime - offset) > 1.0) return false; v.pause(); return true; }",
        arg=[offset],
    )

    # English: the same record, every label translated.
    await page.click("#lang-switch")
    await expect(page.locator("#attendance-summary")).to_have_text(
        "4 invited, 3 attended, 1 absent"
    )
    await expect(absent).to_contain_text("Absent")
    await expect(rows.locator('tr[data-identity="m2"]')).to_contain_text("Left")
    await expect(speech).to_contain_text("taken back by the host")
    await expect(page.locator('.agenda-record[data-agenda-index="1"]')).to_contain_text(
        "Planned but did not speak: 陈静怡"
    )
    await expect(page.locator('[data-i18n="archive.speaking"]')).to_have_text("Speaking record")
    for shown in ("Livelihoods and welfare", "Department: 市民政局", "Received"):
        await expect(suggestion).to_contain_text(shown)
    await expect(page.locator('[data-i18n="archive.attendance"]')).to_have_text("Attendance")
    await page.screenshot(path=str(tmp_path / "archive-record-en.png"), full_page=True)

    # Search inside sessions: a speaker's name finds the speech; clicking it seeks there.
    await page.evaluate("document.getElementById('player').currentTime = 5")
    await page.fill("#q", "陈静怡")
    await page.click("#search-button")
    found = page.locator('#moments li[data-kind="speech"]')
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("Speech")
    await found.locator("button").click()
    await page.wait_for_function(
        "([offset]) => { const v = document.getElementById('player');"
        " if (Math.abs(v.currentTime - offset) > 1.0) return false; v.pause(); return true; }",
        arg=[offset],
    )

    # Deleting asks in the page's own translated dialog; cancelling keeps the recording.
    await page.click("#delete-button")
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".dialog-text")).to_contain_text("audit log")
    await dialog.locator(".dialog-cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(card).to_be_visible()
    await page.click("#delete-button")
    await dialog.locator(".dialog-confirm").click()
    await expect(card).to_be_hidden()
    status, audit = await server.request("GET", "/api/audit", params={"recording": RECORDING_ID})
    assert status == 200 and [e["by"] for e in audit["entries"]] == ["api"]
