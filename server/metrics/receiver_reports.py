"""Receivers' loss and round-trip time, from the RTCP receiver reports the SFU already gets.

aiortc keeps, for each sender, the last receiver report of the subscriber it
sends to (fraction lost, and the round trip computed from it), and for each
receiver the packets its publisher lost on the way; `RTCPeerConnection.getStats()`
returns them. Every `interval` seconds this task reads them for every peer
connection of the node and

* observes each *new* receiver report (its timestamp changed) in the loss and
  round-trip histograms, by media kind (a report arrives about every second;
  one per sender per interval is sampled);
* keeps the totals of transport bytes in and out and of upstream packet loss,
  which the media collector exports.

Nothing here touches the forwarding path: it reads what aiortc's own RTCP
loop has already computed, at a pace independent of the packet rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable

from aiortc import RTCPeerConnection

from server.media import MediaNode
from server.metrics.retained import RetainedTotals
from server.metrics.server_metrics import ServerMetrics

logger = logging.getLogger(__name__)

#: One peer connection's statistics must come within this long (they are local reads).
STATS_TIMEOUT = 2.0


class ReceiverReportSampler:
    """The periodic reader of aiortc statistics (``start()``; ``await close()``)."""

    def __init__(
        self,
        media_node: Callable[[], MediaNode | None],
        metrics: ServerMetrics,
        interval: float = 5.0,
    ) -> None:
        self._media_node = media_node
        self._metrics = metrics
        self.interval = interval
        self._retained = RetainedTotals()
        self._totals: dict[str, float] = {}
        self._last_report: dict[str, object] = {}
        self._task: asyncio.Task[None] | None = None

    def totals(self) -> dict[str, float]:
        """`transport_bytes:in|out` and `upstream_lost:KIND`, as of the last sample."""
        return dict(self._totals)

    def start(self) -> None:
        """Start sampling every `interval` seconds."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="receiver-report-sampler")

    async def close(self) -> None:
        """Stop sampling (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:
                logger.exception("sampling receiver reports failed")

    async def sample(self) -> None:
        """Read every peer connection's statistics once."""
        node = self._media_node()
        pcs: list[RTCPeerConnection] = []
        if node is not None:
            for room in node.rooms.values():
                pcs.extend(room.peer_connections())
        current: dict[tuple[str, Hashable], float] = {}
        seen_reports: dict[str, object] = {}
        for pc in pcs:
            try:
                async with asyncio.timeout(STATS_TIMEOUT):
                    report = await pc.getStats()
            except Exception as exc:  # a connection closing meanwhile
                logger.debug("no statistics from a peer connection: %s", exc)
                continue
            for stats in report.values():
                kind = getattr(stats, "kind", None)
                kind = kind if kind in ("audio", "video") else "other"
                if stats.type == "transport":
                    current[("transport_bytes:in", stats.id)] = stats.bytesReceived or 0
                    current[("transport_bytes:out", stats.id)] = stats.bytesSent or 0
                elif stats.type == "inbound-rtp":
                    key = (f"upstream_lost:{kind}", (stats.id, stats.ssrc))
                    current[key] = max(0, stats.packetsLost or 0)
                elif stats.type == "remote-inbound-rtp":
                    seen_reports[stats.id] = stats.timestamp
                    if self._last_report.get(stats.id) != stats.timestamp:
                        loss = (stats.fractionLost or 0) / 256
                        self._metrics.receiver_report(kind, loss, stats.roundTripTime)
        self._last_report = seen_reports
        self._totals = self._retained.update(current)
