"""An aiortc client of the pre-session check, speaking the protocol the join page speaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from server.loadtest.participant import rtc_configuration
from server.media.aiortc_internals import gather_only_on
from server.precheck.probe import CONTROL_LABEL, DATA_LABEL


@dataclass
class ProbeClient:
    """Runs one leg of the check for a join token, as a browser at a venue would.

    `echo` decides which pings are answered (all by default): leaving some out is
    a link that loses them. `on_open` runs once both channels are open.
    """

    base_url: str
    token: str
    echo: Callable[[int], bool] = lambda seq: True
    on_open: Callable[[], None] | None = None
    pings_seen: int = 0
    chunks_sent: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def config(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """`POST /api/precheck/config`."""
        async with http.post(
            f"{self.base_url}/api/precheck/config", json={"token": self.token}
        ) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def run(
        self,
        http: aiohttp.ClientSession,
        leg: str,
        *,
        ice_servers: Sequence[dict[str, Any]] = (),
        connect_within: float = 60.0,
    ) -> dict[str, Any]:
        """Run `leg` to its end; the server's `result` message, or `{"type": "not_connected"}`
        when the channels did not open within `connect_within` seconds."""
        pc = RTCPeerConnection(rtc_configuration(list(ice_servers), leg == "relay"))
        control = pc.createDataChannel(CONTROL_LABEL)
        data = pc.createDataChannel(DATA_LABEL, ordered=False, maxRetransmits=0)
        result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        uploads: set[asyncio.Task[None]] = set()
        opened: set[str] = set()
        both_open = asyncio.Event()

        def on_open(label: str) -> None:
            opened.add(label)
            if len(opened) == 2:
                both_open.set()
                if self.on_open is not None:
                    self.on_open()

        control.on("open", lambda: on_open(CONTROL_LABEL))
        data.on("open", lambda: on_open(DATA_LABEL))

        @data.on("message")
        def on_ping(message: str | bytes) -> None:
            if isinstance(message, str) and message.startswith("p:"):
                self.pings_seen += 1
                if self.echo(int(message.split(":")[1])):
                    data.send(message)

        @control.on("message")
        def on_control(message: str | bytes) -> None:
            body = json.loads(message)
            self.messages.append(body)
            if body["type"] == "upload":
                uploads.add(asyncio.ensure_future(self._upload(data, control, body)))
            elif body["type"] == "result" and not result.done():
                result.set_result(body)

        try:
            with gather_only_on(("127.0.0.1",)):
                await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                f"{self.base_url}/api/precheck",
                json={"token": self.token, "leg": leg, "sdp": pc.localDescription.sdp},
            ) as response:
                body = await response.json()
                assert response.status == 200, body
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
            try:
                await asyncio.wait_for(both_open.wait(), timeout=connect_within)
            except TimeoutError:
                return {"type": "not_connected"}
            return await asyncio.wait_for(result, timeout=60)
        finally:
            for task in uploads:
                task.cancel()
            with contextlib.suppress(Exception):
                await pc.close()

    async def _upload(
        self, data: RTCDataChannel, control: RTCDataChannel, order: dict[str, Any]
    ) -> None:
        """Send `kbps` for `seconds` in chunks, paced by the clock (catching up when late)."""
        chunk = bytes(int(order["chunk"]))
        per_second = order["kbps"] * 1000 / 8
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < order["seconds"]:
            while sent + len(chunk) <= per_second * elapsed:
                data.send(chunk)
                sent += len(chunk)
                self.chunks_sent += 1
            await asyncio.sleep(0.01)  # pacing: the clock decides how much is due
        control.send(json.dumps({"type": "upload_done"}))
