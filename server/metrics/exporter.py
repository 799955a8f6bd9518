"""MetricsExporter: one node's `/metrics`, from the counters, the collectors and the sampler.

Built with the application (`create_app`), so edges can count from the first
request; `attach()` adds the parts that read the node once it runs (rooms,
media, render queue); `render()` is what a scrape returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import choose_encoder

from server.cluster.node import ClusterNode
from server.media import MediaNode
from server.metrics.broadcasts import BroadcastCollector
from server.metrics.media_collector import MediaCollector
from server.metrics.receiver_reports import ReceiverReportSampler
from server.metrics.render_jobs import RenderJobCollector
from server.metrics.room_collector import RoomCollector
from server.metrics.server_metrics import ServerMetrics


class MetricsExporter:
    """The metrics of one node and what reads them."""

    def __init__(self, node_id: str, *, sample_seconds: float = 5.0) -> None:
        self.metrics = ServerMetrics(node_id)
        self.sample_seconds = sample_seconds
        self._cluster: ClusterNode | None = None
        self._render_jobs: RenderJobCollector | None = None
        self._media: MediaCollector | None = None
        self.sampler = ReceiverReportSampler(self._media_node, self.metrics, sample_seconds)

    def _media_node(self) -> MediaNode | None:
        return None if self._cluster is None else self._cluster.directory.media_node

    def attach(
        self,
        *,
        cluster: ClusterNode,
        connections: Callable[[], int],
        redis_url: str,
        broadcasts: Callable[[], Any] = lambda: None,
    ) -> None:
        """Start reading the running node: its rooms and media, its live broadcasts
        (`broadcasts`: the node's BroadcastService, or None) and the render queue."""
        registry = self.metrics.registry
        self._cluster = cluster
        registry.register(RoomCollector(lambda: self._cluster, connections))
        self._media = MediaCollector(self._media_node, self.sampler)
        registry.register(self._media)
        registry.register(BroadcastCollector(broadcasts))
        self._render_jobs = RenderJobCollector(redis_url)
        registry.register(self._render_jobs)
        self.sampler.start()

    async def refresh(self) -> None:
        """Read, before a scrape, what needs I/O (the render queue) or too long a walk to
        run in one turn of the event loop (the media layer's counters)."""
        if self._render_jobs is not None:
            await self._render_jobs.refresh()
        if self._media is not None:
            await self._media.refresh()

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition of everything (runs the collectors; the media layer's as of the
        last `refresh()`) and its content type: the Prometheus text format, or
        OpenMetrics when the scraper's `Accept` asks for it."""
        encode, content_type = choose_encoder(accept)
        return encode(self.metrics.registry), content_type

    async def close(self) -> None:
        """Stop the sampler and close the render queue's connection."""
        self._cluster = None
        await self.sampler.close()
        if self._render_jobs is not None:
            self._render_jobs.close()
