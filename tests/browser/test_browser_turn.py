"""A browser that may use the TURN relay only (a venue whose UDP is blocked) gets through.

A real coturn on loopback; the server hands its URLs and a short-lived
credential in the join ack; the page opened with `?ice=relay` gathers relay
candidates only (`iceTransportPolicy: "relay"`). It sees and hears an aiortc
member, the member sees it, and the page's connections run over a relay pair.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import Browser

from server.loadtest.clip import encode_audio, encode_video
from server.loadtest.participant import LoadParticipant
from tests.browser.support import DESKTOP, WAIT_MS, enter
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, ApiHandle, eventually
from tests.processes import server_process
from tests.turn_kit import coturn

#: The type of the local candidate of a connection's selected pair ("relay", "host", ...).
SELECTED_LOCAL_CANDIDATE = """async (which) => {
  const pc = which === "publish" ? window.yitang.media.pubPc : window.yitang.media.subPc;
  if (!pc) return null;
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  if (!transport) return null;
  const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = stats.find((s) => s.id === pair.localCandidateId);
  return local ? local.candidateType : null;
}"""


async def test_a_relay_only_browser_sees_and_is_seen_through_turn(
    browser: Browser, tmp_path: Path
) -> None:
    async with (
        coturn(tmp_path / "turn") as relay,
        server_process(tmp_path / "data", free_port(), *relay.serve_args()) as node,
        aiohttp.ClientSession() as http,
    ):
        api = ApiHandle(node.base_url, node.api_key, http)
        status, room = await api.request("POST", "/api/rooms", ROOM_SPEC)
        assert status == 201, room
        host_token = await api.token(room["id"], "host", "host", "hunan")
        member = LoadParticipant(
            node.base_url, await api.token(room["id"], "m1", "member", "shifeng"),
            video=encode_video("vp8", 320, 240, 30, 300_000), audio=encode_audio(),
            codec="vp8", ice_addresses=("127.0.0.1",),
        )  # fmt: skip
        context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(f"{node.base_url}/join?token={host_token}&ice=relay")
            await enter(page)
            await member.join()
            await page.wait_for_function(
                "async () => (await window.yitang.media.framesDecoded('m1')) >= 15",
                timeout=40_000,
            )

            def host_seen() -> bool:
                return any(
                    t.publisher == "host" and t.kind == "video" and t.frames >= 15
                    for t in member.tracks
                )

            # Frames arrive on the media path, which wakes no signaling wait: poll.
            await eventually(host_seen, "the member sees the page's camera", within=40)
            for which in ("publish", "subscribe"):
                kind = await page.evaluate(SELECTED_LOCAL_CANDIDATE, which)
                assert kind == "relay", f"the page's {which} connection runs over {kind}"
            assert ":host" in relay.log.read_text(), "the page allocated on coturn as itself"
            assert errors == []
        finally:
            await member.close()
            await context.close()
