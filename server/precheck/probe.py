"""ProbePeer: one short-lived aiortc peer that measures one leg of a venue's link.

The browser offers two data channels and nothing else:

* ``yitang-probe-data``: unordered, ``maxRetransmits: 0`` (a lost message stays lost,
  as a lost media packet does). The server sends ``p:<seq>:<nonce>`` pings on it and the
  browser echoes each one as it came; then the browser sends its uplink chunks (binary).
* ``yitang-probe-control``: reliable. The server says when to start the uplink probe
  (``{"type": "upload", "seconds", "kbps", "chunk"}``) and sends the result
  (``{"type": "result", ...}``); the browser may say ``{"type": "upload_done"}``.

Everything in the result is measured here: the round trip of the server's own pings
(a browser cannot answer a ping it did not receive: each carries a random nonce), the
share never answered, and the bytes that arrived within the uplink window. The peer
never joins a room and closes itself after ``max_seconds`` whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import statistics
import time
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from server.media.aiortc_internals import data_channel_candidate_types, gather_only_on
from server.media.errors import MediaError
from server.media.ice_policy import IcePolicy

from .config import PrecheckSettings
from .models import Leg, LegResult
from .offer import check_probe_offer
from .verdict import leg_verdict, percentile

logger = logging.getLogger(__name__)

DATA_LABEL = "yitang-probe-data"
CONTROL_LABEL = "yitang-probe-control"
#: Longest control message the browser may send (it only ever sends `upload_done`).
MAX_CONTROL_MESSAGE = 256
#: How long the result may take to reach the browser before the peer closes anyway.
RESULT_FLUSH_SECONDS = 2.0


class ProbePeer:
    """One leg's probe: answer the browser's offer, measure, report, close."""

    def __init__(self, settings: PrecheckSettings, policy: IcePolicy, leg: Leg) -> None:
        self.settings = settings
        self.leg = leg
        self._policy = policy
        self._pc = RTCPeerConnection(policy.rtc_configuration())
        self._channels: dict[str, RTCDataChannel] = {}
        self._both_open = asyncio.Event()
        self._sent: dict[int, tuple[str, float]] = {}
        self._rtts: dict[int, float] = {}
        self._all_answered = asyncio.Event()
        self._upload_started: float | None = None
        self._upload_bytes = 0
        self._upload_done = asyncio.Event()
        self._control_closed = asyncio.Event()
        self._closed = False
        self._pc.on("datachannel", self._on_channel)

    async def answer(self, offer: str) -> str:
        """Apply the browser's offer; our answer (MediaError("bad_sdp") when refused)."""
        check_probe_offer(offer)
        try:
            await self._pc.setRemoteDescription(
                RTCSessionDescription(sdp=self._policy.filter_remote_sdp(offer), type="offer")
            )
            answer = await self._pc.createAnswer()
            with gather_only_on(self._policy.gather_addresses, self._policy.remote_allow):
                await self._pc.setLocalDescription(answer)
        except Exception as exc:
            logger.info("probe offer refused by aiortc: %r", exc)
            await self.close()
            raise MediaError("bad_sdp", "the offer could not be applied") from None
        return self._policy.rewrite_local_sdp(self._pc.localDescription.sdp)

    async def run(self) -> LegResult:
        """Measure (within the time bounds) and return what was measured."""
        settings = self.settings
        try:
            async with asyncio.timeout(settings.connect_timeout):
                await self._both_open.wait()
        except TimeoutError:
            return self._result(connected=False)
        try:
            async with asyncio.timeout(settings.max_seconds - settings.connect_timeout):
                await self._pings()
                await self._upload()
        except TimeoutError:
            logger.info("probe (%s) ran out of time; reporting what it has", self.leg)
        except Exception as exc:  # the browser went away mid-way: report what arrived
            logger.info("probe (%s) cut short: %r", self.leg, exc)
        return self._result(connected=True)

    async def report(self, message: dict[str, Any]) -> None:
        """Send the result on the control channel and give it a moment to arrive."""
        control = self._channels.get(CONTROL_LABEL)
        if control is None or control.readyState != "open":
            return
        with contextlib.suppress(Exception):
            control.send(json.dumps(message))
            # The browser closes once it has the result; wait for that, briefly.
            async with asyncio.timeout(RESULT_FLUSH_SECONDS):
                await self._control_closed.wait()

    async def close(self) -> None:
        """Close the peer connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._pc.close()

    # --- measuring ------------------------------------------------------------------

    async def _pings(self) -> None:
        settings = self.settings
        data = self._channels[DATA_LABEL]
        for seq in range(settings.pings):
            nonce = secrets.token_hex(6)
            self._sent[seq] = (nonce, time.monotonic())
            data.send(f"p:{seq}:{nonce}")
            await asyncio.sleep(settings.ping_interval)
        # Echoes still on their way get a grace period; all in ends it at once.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.ping_grace):
                await self._all_answered.wait()

    async def _upload(self) -> None:
        settings = self.settings
        control = self._channels[CONTROL_LABEL]
        control.send(
            json.dumps(
                {
                    "type": "upload",
                    "seconds": settings.upload_seconds,
                    "kbps": settings.upload_kbps,
                    "chunk": settings.upload_chunk,
                }
            )
        )
        # The window: from the first chunk that arrives, `upload_seconds` (and a little
        # slack for the last ones in flight); a browser that says it is done ends it early.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.upload_seconds + 3.0):
                await self._upload_done.wait()

    def _on_data(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._on_echo(message)
            return
        if len(message) > self.settings.upload_chunk:
            return  # not a chunk of ours: not counted
        now = time.monotonic()
        if self._upload_started is None:
            self._upload_started = now
        if now - self._upload_started <= self.settings.upload_seconds + 0.25:
            self._upload_bytes += len(message)
        else:
            self._upload_done.set()

    def _on_echo(self, message: str) -> None:
        parts = message.split(":")
        if len(parts) != 3 or parts[0] != "p" or not parts[1].isdigit() or len(parts[1]) > 6:
            return
        seq = int(parts[1])
        sent = self._sent.get(seq)
        if sent is None or sent[0] != parts[2] or seq in self._rtts:
            return  # never sent, a forged nonce, or a duplicate
        self._rtts[seq] = (time.monotonic() - sent[1]) * 1000.0
        if len(self._rtts) == self.settings.pings:
            self._all_answered.set()

    def _on_control(self, message: str | bytes) -> None:
        if not isinstance(message, str) or len(message) > MAX_CONTROL_MESSAGE:
            return
        with contextlib.suppress(ValueError):
            if json.loads(message) == {"type": "upload_done"}:
                self._upload_done.set()

    def _on_channel(self, channel: RTCDataChannel) -> None:
        label = channel.label
        if label not in (DATA_LABEL, CONTROL_LABEL) or label in self._channels:
            channel.close()  # anything else has no business here
            return
        self._channels[label] = channel
        if label == DATA_LABEL:
            channel.on("message", self._on_data)
        else:
            channel.on("message", self._on_control)
            channel.on("close", self._control_closed.set)
        if len(self._channels) == 2:
            self._both_open.set()

    def _result(self, *, connected: bool) -> LegResult:
        settings = self.settings
        rtts = list(self._rtts.values())
        sent = len(self._sent)
        loss = (sent - len(rtts)) / sent if connected and sent else None
        kbps = (
            self._upload_bytes * 8 / 1000 / settings.upload_seconds
            if connected and self._upload_started is not None
            else (0.0 if connected else None)
        )
        p95 = round(percentile(rtts, 0.95), 1) if rtts else None
        verdict, reasons = leg_verdict(
            connected=connected,
            loss=loss if rtts or not connected else 1.0,
            rtt_ms_p95=p95,
            uplink_kbps=kbps,
            uplink_target_kbps=settings.upload_kbps,
        )
        types = data_channel_candidate_types(self._pc) if connected else None
        return LegResult(
            leg=self.leg,
            connected=connected,
            candidate=types[1] if types else None,
            pings_sent=sent,
            pings_answered=len(rtts),
            loss=round(loss, 4) if loss is not None else None,
            rtt_ms_median=round(statistics.median(rtts), 1) if rtts else None,
            rtt_ms_p95=p95,
            uplink_kbps=round(kbps, 1) if kbps is not None else None,
            uplink_target_kbps=settings.upload_kbps,
            verdict=verdict,
            reasons=reasons,
            at=time.time(),
        )
