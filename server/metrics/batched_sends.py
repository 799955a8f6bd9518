"""The compiled fan-out's batched sends: ``yitang_forward_gso_sends_total`` and kin.

While a node reads a publisher's socket, the copies it makes are queued and sent
when the read is done, each subscriber's run of equal-sized copies in one UDP GSO
send (server/media/_fanout.c, docs/forwarding.md *Batched sends*). These counters
say how much of the forwarding went that way: copies per GSO send near 1 means the
packets came one at a time (a node with time to spare), more means bursts read
together. Per process, as the forward delay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from server.media import fanout

#: (metric, key of fanout.gso_stats(), help)
_COUNTERS = (
    (
        "yitang_forward_gso_sends",
        "sends",
        "UDP GSO sends of the compiled fan-out: each carries a run of one subscriber's "
        "copies of packets read together",
    ),
    ("yitang_forward_gso_copies", "segments", "Copies sent in those GSO sends"),
    (
        "yitang_forward_gso_refused",
        "refused",
        "GSO sends the kernel refused (that destination's copies then go one at a time)",
    ),
    (
        "yitang_forward_copies_handed_back",
        "handed_back",
        "Queued copies the kernel refused (a full socket buffer), handed to asyncio",
    ),
)


class BatchedSendsCollector(Collector):
    """The fan-out's GSO counters, read when scraped (nothing where it is not compiled)."""

    def collect(self) -> Iterator[Any]:
        if not fanout.available():
            return
        stats = fanout.gso_stats()
        for name, key, documentation in _COUNTERS:
            yield CounterMetricFamily(name, documentation, value=float(stats[key]))
