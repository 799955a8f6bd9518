"""How long this node held a publisher's packet before its last copy went out
(``yitang_forward_delay_seconds``), and before each copy went out
(``yitang_forward_copy_delay_seconds``).

The SFU's own share of a packet's latency, as the node itself measures it: from
the kernel's receipt of the packet to the end of its handling in the compiled
ingest, for every packet the compiled fan-out forwarded
(server/media/ingest.py, :class:`~server.media.ingest.ForwardDelays`). A stall of
the process (a garbage collection, a slow callback) shows here as a tail. Per
process, as the garbage collector's pauses: each node process exports its own.

The first is the packet's worst case: its last copy waits for all the others. The
second counts each copy once, at the time it went out: what each receiver's packet
waited here, which is what "the SFU adds per packet" means for a receiver (the
latency benchmark's definition, bench/latency.py). A copy's delay is never more than
its packet's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from server.media import ingest
from server.metrics.histogram_buckets import cumulative_buckets


class ForwardDelayCollector(Collector):
    """``yitang_forward_delay_seconds`` and ``yitang_forward_copy_delay_seconds``, read
    when scraped (nothing where the ingest is not compiled: the Python paths are not
    timed)."""

    def collect(self) -> Iterator[Any]:
        for name, help_text, delays in (
            (
                "yitang_forward_delay_seconds",
                "From the kernel's receipt of a publisher's RTP packet to its last copy sent, "
                "for each packet this process forwarded (the SFU's share of the latency)",
                ingest.forward_delays(),
            ),
            (
                "yitang_forward_copy_delay_seconds",
                "From the kernel's receipt of a publisher's RTP packet to each copy sent, "
                "for each copy this process forwarded (what each receiver's packet waited)",
                ingest.copy_delays(),
            ),
        ):
            if delays is not None:
                family = HistogramMetricFamily(name, help_text)
                family.add_metric([], cumulative_buckets(delays.bounds, delays.counts), delays.sum)
                yield family
