"""Receivers' loss and round-trip time, from the RTCP receiver reports the SFU already gets.

aiortc keeps, for each sender, the last receiver report of the subscriber it
sends to (fraction lost, and the round trip computed from it), and for each
receiver the packets its publisher lost on the way. Every `interval` seconds
this task reads them for every peer connection of the node
(server/media/connection_counters.py), one connection per turn of the event
loop, and

* observes each *new* receiver report (its timestamp changed) in the loss and
  round-trip histograms, by media kind (a report arrives about every second;
  one per sender per interval is sampled);
* keeps the totals of transport bytes in and out and of upstream packet loss,
  which the media collector exports.

Nothing here touches the forwarding path: it reads what aiortc's own RTCP
loop has already computed, at a pace independent of the packet rate. It reads
the counters where they are kept, not through `getStats()`, and yields to the
event loop after each connection: reading a 21 + 63 session's 168 connections
through `getStats()` in one go held the loop 5-19 ms every 5 s, and every
packet of the node waited that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable

from aiortc import RTCPeerConnection

from server.media import MediaNode
from server.media.connection_counters import read_counters
from server.metrics.retained import RetainedTotals
from server.metrics.server_metrics import ServerMetrics

logger = logging.getLogger(__name__)


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
        self._last_report: dict[Hashable, float] = {}
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
        """Read every peer connection's counters once, yielding to the event loop after
        each (a connection closed meanwhile is read as it was)."""
        node = self._media_node()
        pcs: list[RTCPeerConnection] = []
        if node is not None:
            for room in node.rooms.values():
                pcs.extend(room.peer_connections())
        current: dict[tuple[str, Hashable], float] = {}
        seen_reports: dict[Hashable, float] = {}
        for pc in pcs:
            counters = read_counters(pc)
            for stats_id, (bytes_in, bytes_out) in counters.transport_bytes.items():
                current[("transport_bytes:in", stats_id)] = bytes_in
                current[("transport_bytes:out", stats_id)] = bytes_out
            for stream in counters.inbound:
                kind = stream.kind if stream.kind in ("audio", "video") else "other"
                current[(f"upstream_lost:{kind}", stream.key)] = max(0, stream.packets_lost)
            for report in counters.reports:
                seen_reports[report.key] = report.received_at
                if self._last_report.get(report.key) != report.received_at:
                    kind = report.kind if report.kind in ("audio", "video") else "other"
                    self._metrics.receiver_report(
                        kind, report.fraction_lost / 256, report.round_trip_time
                    )
            await asyncio.sleep(0)
        self._last_report = seen_reports
        self._totals = self._retained.update(current)
