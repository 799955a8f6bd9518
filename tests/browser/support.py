"""Helpers for the browser tests: Chromium settings, pages per participant, joining, waiting."""

from __future__ import annotations

import contextlib
import math
import struct
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    expect,
)
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers import ApiHandle

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # Real host candidates instead of mDNS names, so the SFU on 127.0.0.1 can pair with them.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Nothing may resolve a name: every URL in these tests is 127.0.0.1.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

#: Where screenshots go for a person to look at (repo-relative).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

DESKTOP: ViewportSize = {"width": 1280, "height": 720}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: Default wait for UI conditions, in ms: generous, for a suite beside a CPU hog (two
#: workers, each with Chromium, a server and its test; a raised hand once took more than
#: 10 s to reach a moderator's queue there). A condition that holds ends the wait at once.
WAIT_MS = 20_000


@dataclass
class Person:
    """An invited participant and their join link."""

    identity: str
    name: str
    role: str
    venue: str
    venue_name: str
    level: str
    url: str


@dataclass
class Participants:
    """The standard room: host at the provincial main venue, members at city and county
    venues, an observer at the national venue."""

    room_id: str
    host: Person
    m1: Person
    m2: Person
    obs: Person

    @classmethod
    async def invite(cls, server: ApiHandle) -> Participants:
        room = await server.create_room()
        venues = {v["id"]: v for v in room["venues"]}

        async def person(identity: str, name: str, role: str, venue: str) -> Person:
            token = await server.token(room["id"], identity, role, venue, name=name)
            v = venues[venue]
            return Person(
                identity,
                name,
                role,
                venue,
                v["name"],
                v["level"],
                f"{server.base_url}/join?token={token}",
            )

        return cls(
            room["id"],
            await person("host", "李主席", "host", "hunan"),
            await person("m1", "张委员", "member", "zhuzhou"),
            await person("m2", "刘委员", "member", "shifeng"),
            await person("obs", "陈旁听", "observer", "national"),
        )

    @property
    def everyone(self) -> list[Person]:
        return [self.host, self.m1, self.m2, self.obs]


@dataclass
class PageFactory:
    """New pages, each in its own browser context (its own storage: one participant each)."""

    browser: Browser
    server: ApiHandle
    contexts: list[BrowserContext] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    async def new_page(self, viewport: ViewportSize | None = None, lang: str | None = None) -> Page:
        context = await self.browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN")
        if lang:
            await context.add_init_script(f"localStorage.setItem('yitang.lang', {lang!r})")
        self.contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda exc: self.page_errors.append(f"{page.url}: {exc}"))
        page.on("console", self._on_console)
        return page

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    async def join(
        self, person: Person, viewport: ViewportSize | None = None, lang: str | None = None
    ) -> Page:
        """Open a participant's join link, pass the pre-join screen and wait for the room."""
        page = await self.new_page(viewport, lang)
        await page.goto(person.url)
        await enter(page)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Error):
                await context.close()

    def assert_no_page_errors(self) -> None:
        assert not self.page_errors, "uncaught errors in the page:\n" + "\n".join(self.page_errors)


async def enter(page: Page) -> None:
    """Click "enter" on the pre-join screen and wait until the join ack was applied."""
    await page.locator("#enter-button").click()
    await page.wait_for_function("() => Boolean(window.yitang && window.yitang.store.you)")
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected")


async def js(page: Page, expression: str, arg: Any = None) -> Any:
    """Evaluate in the page (a function expression taking one argument)."""
    return await page.evaluate(expression, arg)


async def open_tab(page: Page, tab: str) -> None:
    """Select a side-panel tab (agenda, queue, people, chat)."""
    await page.locator(f"#tab-{tab}").click()
    await expect(page.locator(f"#panel-{tab}")).to_be_visible()


# Keeps, in the page, every distinct state of some elements. A MutationObserver's callback
# runs after each task that changed the DOM, so every state a render left on screen is kept,
# however briefly it lasted.
_RECORD = """(fields) => {
  const read = (spec) => {
    const [selector, attribute] = spec.split("@");
    const el = document.querySelector(selector);
    if (!el) return "";
    if (attribute) return el.getAttribute(attribute) || "";
    return el.checkVisibility() ? el.textContent.replace(/\\s+/g, " ").trim() : "";
  };
  window.__recorder?.disconnect();
  const shown = (window.__shown = []);
  const record = () => {
    const state = Object.fromEntries(Object.entries(fields).map(([k, spec]) => [k, read(spec)]));
    const last = shown[shown.length - 1];
    if (!last || Object.keys(state).some((key) => state[key] !== last[key])) shown.push(state);
  };
  record();
  // Playing videos count their frames in data-frames many times a second: not a change.
  window.__recorder = new MutationObserver((changes) => {
    if (changes.some((change) => change.attributeName !== "data-frames")) record();
  });
  window.__recorder.observe(document.documentElement, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
  });
}"""

_SHOWN = """(want) => (window.__shown || []).some((state) =>
  Object.entries(want).every(([key, pattern]) => new RegExp(pattern).test(state[key])))"""

#: What the stage shows: who is in the spotlight, with their timed floor's countdown, and the
#: speaker's own floor notice (fields for `record_shown`).
STAGE = {
    "identity": "#spotlight@data-identity",
    "name": "#spotlight .tile-name",
    "venue": "#spotlight .tile-venue",
    "level": "#spotlight .tile-level",
    "countdown": "#spotlight .countdown",
    "notice": "#floor-notice-time",
}


async def record_shown(page: Page, **fields: str) -> None:
    """Start keeping every state of some elements, for `expect_shown` (one record per page).

    Each field is a CSS selector, read as the element's text while it is visible ("" when
    hidden or absent), or ``selector@attribute`` for an attribute's value.
    """
    await page.evaluate(_RECORD, fields)


async def expect_shown(page: Page, **patterns: str) -> None:
    """Wait until the page has shown, at one moment since `record_shown`, a state whose
    fields each match their regular expression (searched, like ``to_have_text(re.compile())``).

    For states that may end before the test looks: a 2-second floor that expires on the
    server's clock, a label or banner that hides itself after a few seconds. On a busy
    machine the test's look comes late, though the user saw it.
    """
    try:
        await page.wait_for_function(_SHOWN, arg=patterns, timeout=WAIT_MS)
    except PlaywrightTimeoutError:
        shown = await page.evaluate("() => window.__shown || []")
        who = await page.evaluate("() => window.yitang?.store?.myIdentity || location.pathname")
        raise AssertionError(
            f"{who}'s page never showed {patterns}; it showed:\n" + "\n".join(map(str, shown))
        ) from None


async def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def write_tone(path: Path, seconds: float = 2.0, rate: int = 48_000, dbfs: float = -12.0) -> None:
    """Write a mono 16-bit WAV of a 440 Hz tone (a whole number of cycles, so it loops cleanly)."""
    amplitude = 32767 * 10 ** (dbfs / 20)
    frames = b"".join(
        struct.pack("<h", round(amplitude * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
