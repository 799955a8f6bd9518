"""The server's own account of the load window: how long it held the packets it forwarded.

A node times each packet it forwards from the kernel's receipt to its last copy
sent (``yitang_forward_delay_seconds``), and each copy from the kernel's receipt
to that copy's send (``yitang_forward_copy_delay_seconds``;
server/metrics/forward_delay.py), and each compound RTCP packet it handles
(``yitang_rtcp_handling_seconds``: receiver reports and feedback, handled in the
same read of the sockets, so a wait for the packets behind them). The load test
reads the histograms from the room's node at the window's start and end; the
difference is the window's.
Unlike the probes' latency (server/loadtest/latency.py), which runs from a
publisher's SRTP to a subscriber's and so includes both clients' queues, these
are the SFU's share alone: the figures the "< 5 ms p99 added" target is about.
The copy delay is what each receiver's packet waited (the latency benchmark's
"added", bench/latency.py, is per received packet too); the last copy's is each
packet's worst case.

With several node processes behind one port each new connection may reach any
of them, so the scrape is repeated (a bounded number of times, each on a new
connection) until the room's node answers. A scrape holds the node's event loop
while it renders (~25 ms at 36 participants): the few dozen packets the first
one delays are counted in the window.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

#: The histogram each node exports: to each packet's last copy.
METRIC = "yitang_forward_delay_seconds"
#: ... and to each copy.
COPY_METRIC = "yitang_forward_copy_delay_seconds"
#: How long the node took for each compound RTCP packet (in the same read path).
RTCP_METRIC = "yitang_rtcp_handling_seconds"
#: How long the node's event loop ran between two waits (datagrams waited meanwhile).
LOOP_METRIC = "yitang_event_loop_busy_seconds"
#: Subscribers by their link's level, and the steps of those levels (quality tiers).
RECEIVERS_METRIC = "yitang_receivers"
LEVEL_STEPS_METRIC = "yitang_receiver_level_steps"
#: The target's line: the share of packets held at most this long is reported.
TARGET_SECONDS = 0.005
#: What counts as a stall of the server (reported as a count).
STALL_SECONDS = 0.1
#: Scrapes (each on a new connection) before giving up on reaching the room's node.
SCRAPE_ATTEMPTS = 16
#: Largest /metrics body read (a node's is ~50 kB).
MAX_METRICS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class DelayHistogram:
    """One scrape of a node's forward delay histogram."""

    #: Upper bounds in seconds, ascending, the last +Inf.
    bounds: tuple[float, ...]
    #: Packets at or under each bound (cumulative, as Prometheus gives them).
    cumulative: tuple[int, ...]
    #: The sum of the delays, in seconds.
    sum: float


@dataclass(frozen=True)
class NodeDelays:
    """One scrape of a node's delay histograms."""

    #: To each forwarded packet's last copy.
    packets: DelayHistogram
    #: To each copy (None: the node does not export it).
    copies: DelayHistogram | None
    #: Each compound RTCP packet's handling (None: the node does not export it).
    rtcp: DelayHistogram | None = None
    #: Each stretch its event loop ran between two waits (None: not exported).
    loop: DelayHistogram | None = None
    #: Subscribers by the level of their link, "full", "reduced", "audio_only" (empty:
    #: not exported); and the steps of those levels so far, "down" and "up".
    receivers: dict[str, int] = field(default_factory=dict)
    level_steps: dict[str, int] = field(default_factory=dict)


def parse_metrics(text: str) -> tuple[str | None, NodeDelays | None]:
    """The node id (``yitang_node_info``) and its delay histograms, from /metrics (None:
    no forward delay exported)."""
    node: str | None = None
    names = (METRIC, COPY_METRIC, RTCP_METRIC, LOOP_METRIC)
    buckets: dict[str, dict[float, int]] = {name: {} for name in names}
    totals = dict.fromkeys(names, 0.0)
    receivers: dict[str, int] = {}
    level_steps: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "yitang_node_info":
            node = next((s.labels.get("node") for s in family.samples), None)
        elif family.name in (RECEIVERS_METRIC, LEVEL_STEPS_METRIC, f"{LEVEL_STEPS_METRIC}_total"):
            # By sample: the text format names a counter's family with or without _total.
            for sample in family.samples:
                if sample.name == RECEIVERS_METRIC:
                    receivers[sample.labels["link_level"]] = int(sample.value)
                elif sample.name == f"{LEVEL_STEPS_METRIC}_total":
                    level_steps[sample.labels["direction"]] = int(sample.value)
        elif family.name in buckets:
            for sample in family.samples:
                if sample.name == f"{family.name}_bucket":
                    buckets[family.name][float(sample.labels["le"])] = int(sample.value)
                elif sample.name == f"{family.name}_sum":
                    totals[family.name] = float(sample.value)

    def histogram(metric: str) -> DelayHistogram | None:
        if not buckets[metric]:
            return None
        bounds = tuple(sorted(buckets[metric]))
        return DelayHistogram(bounds, tuple(buckets[metric][b] for b in bounds), totals[metric])

    packets = histogram(METRIC)
    if packets is None:
        return node, None
    return node, NodeDelays(
        packets,
        histogram(COPY_METRIC),
        histogram(RTCP_METRIC),
        histogram(LOOP_METRIC),
        receivers,
        level_steps,
    )


async def scrape(url: str, api_key: str, node: str) -> NodeDelays | None:
    """The histograms of ``node`` read through ``url`` (None: that node did not answer
    within the attempts, or exports no forward delay: the ingest is not compiled)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    timeout = aiohttp.ClientTimeout(total=10)
    for _ in range(SCRAPE_ATTEMPTS):
        # A new connection each time: with several nodes on one port, each may reach another.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as http:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(f"{url}/metrics") as response:
                    if response.status != 200:
                        return None
                    body = await response.content.read(MAX_METRICS_BYTES)
                    answered, histogram = parse_metrics(body.decode("utf-8", "replace"))
                    if answered == node:
                        return histogram
    return None


def window(node: str, before: NodeDelays, after: NodeDelays) -> dict[str, Any] | None:
    """What the node's histograms gained between two scrapes, summarised for the report:
    for the packets (to their last copy), their count, p50 and p99 (interpolated within
    their bucket, as Prometheus's histogram_quantile), the share at or under 5 ms (the
    target's line is a bucket bound, so this share is exact) and the count held over
    100 ms; the same for the copies under ``per_copy``, for the compound RTCP
    packets the node handled under ``rtcp``, and for the stretches its event loop
    ran between two waits under ``loop`` (with their count over 5 ms and the upper
    bound of the longest's bucket; each None: not exported)."""
    packets = _difference(before.packets, after.packets)
    if packets is None:
        return None  # the node restarted with other buckets: no difference to take
    copies = None
    if before.copies is not None and after.copies is not None:
        copies = _difference(before.copies, after.copies)
    rtcp = None
    if before.rtcp is not None and after.rtcp is not None:
        rtcp = _difference(before.rtcp, after.rtcp)
    if not packets["count"]:
        return {"node": node, "packets": 0}
    count = packets.pop("count")
    if copies is not None:
        copies["copies"] = copies.pop("count")
    if rtcp is not None:
        rtcp["compound_packets"] = rtcp.pop("count")
    loop = None
    if before.loop is not None and after.loop is not None:
        loop = _difference(before.loop, after.loop)
        if loop is not None:
            loop["stretches"] = loop.pop("count")
            loop.update(_tail(before.loop, after.loop))
    return {
        "node": node,
        "packets": count,
        **packets,
        "per_copy": copies,
        "rtcp": rtcp,
        "loop": loop,
        "receivers": _receivers(before, after),
    }


def _receivers(before: NodeDelays, after: NodeDelays) -> dict[str, Any] | None:
    """The subscribers by their link's level at the window's end, and the steps of those
    levels in the window (None: not exported). A receiver stepped down pauses videos the
    report then counts as not forwarded, so runs compare only with their levels."""
    if not after.receivers:
        return None
    return {
        "levels": dict(after.receivers),
        "steps_down": after.level_steps.get("down", 0) - before.level_steps.get("down", 0),
        "steps_up": after.level_steps.get("up", 0) - before.level_steps.get("up", 0),
    }


def _tail(before: DelayHistogram, after: DelayHistogram) -> dict[str, Any]:
    """How many of what ``after`` holds beyond ``before`` were over 5 ms, and the upper
    bound (ms) of the highest bucket with any (None: the +Inf bucket, or none at all)."""
    counts = [a - b for a, b in zip(after.cumulative, before.cumulative, strict=True)]
    over = None
    if TARGET_SECONDS in after.bounds:
        over = counts[-1] - counts[after.bounds.index(TARGET_SECONDS)]
    longest: float | None = None
    below = 0
    for bound, count in zip(after.bounds, counts, strict=True):
        if count > below:
            longest = None if bound == float("inf") else round(bound * 1000, 3)
        below = count
    return {"over_5ms": over, "longest_ms": longest}


def _difference(before: DelayHistogram, after: DelayHistogram) -> dict[str, Any] | None:
    """The summary of what ``after`` holds beyond ``before`` (None: other buckets)."""
    if before.bounds != after.bounds:
        return None
    counts = [a - b for a, b in zip(after.cumulative, before.cumulative, strict=True)]
    total = counts[-1]
    if total <= 0:
        return {"count": 0}
    within = counts[after.bounds.index(TARGET_SECONDS)] if TARGET_SECONDS in after.bounds else None
    stalls = counts[after.bounds.index(STALL_SECONDS)] if STALL_SECONDS in after.bounds else None
    return {
        "count": total,
        "mean_ms": round(1000 * (after.sum - before.sum) / total, 3),
        "p50_ms": _quantile(after.bounds, counts, 0.5),
        "p99_ms": _quantile(after.bounds, counts, 0.99),
        "within_5ms": None if within is None else round(within / total, 5),
        "over_100ms": None if stalls is None else total - stalls,
    }


def _quantile(bounds: tuple[float, ...], cumulative: list[int], q: float) -> float | None:
    """histogram_quantile's estimate, in ms: linear within the bucket the rank falls in
    (None if it falls in the +Inf bucket: no upper bound to say)."""
    rank = q * cumulative[-1]
    lower, below = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return None
            inside = count - below
            share = 1.0 if inside == 0 else (rank - below) / inside
            return round(1000 * (lower + (bound - lower) * share), 3)
        lower, below = bound, count
    return None
