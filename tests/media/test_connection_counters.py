"""A peer connection's counters read directly (server/media/connection_counters.py): the
figures aiortc's getStats() gives, and the metrics sampler that reads them a connection
per turn of the event loop. Real aiortc peers through a media node."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from media_testkit import LoopTurns, RoomHarness

from server.media.aiortc_internals import SENDER_ATTRIBUTES, HookedRtpSender
from server.media.connection_counters import ConnectionCounters, read_counters
from server.metrics.receiver_reports import ReceiverReportSampler
from server.metrics.server_metrics import ServerMetrics


def _forwarding_senders(harness: RoomHarness) -> list[HookedRtpSender]:
    return [
        sender
        for pc in harness.room.peer_connections()
        for sender in pc.getSenders()
        if isinstance(sender, HookedRtpSender)
    ]


async def _two_publishers_reporting(harness: RoomHarness) -> None:
    """alice and bob publish and watch each other, until every track forwarded has had a
    receiver report answering a sender report of ours (its round trip is known) and every
    published one has been received."""
    for name in ("alice", "bob"):
        await harness.client(name, width=64, height=48).join()

    def ready() -> bool:
        senders = _forwarding_senders(harness)
        received = [c for pc in harness.room.peer_connections() for c in [read_counters(pc)]]
        return (
            len(senders) == 4
            and all(s.report_time > 0 for s in senders)
            and all(getattr(s, SENDER_ATTRIBUTES["rtt"]) is not None for s in senders)
            and sum(len(c.inbound) for c in received) == 4
        )

    await harness.wait_until(ready, "receiver reports on the four forwarded tracks", 30)


def _between(before: float, value: float, after: float) -> bool:
    return min(before, after) <= value <= max(before, after)


def _suffix(stats_id: str, prefix: str) -> int:
    assert stats_id.startswith(prefix)
    return int(stats_id.removeprefix(prefix))


async def _compare(pc: RTCPeerConnection) -> ConnectionCounters:
    # Media flows meanwhile: getStats() (several turns of the loop) must lie between a
    # read before and one after, and a report be that of one of them.
    before = read_counters(pc)
    report = await pc.getStats()
    after = read_counters(pc)
    transports = {s.id: s for s in report.values() if s.type == "transport"}
    assert set(transports) == set(before.transport_bytes) == set(after.transport_bytes)
    for stats_id, s in transports.items():
        (in_before, out_before), (in_after, out_after) = (
            before.transport_bytes[stats_id],
            after.transport_bytes[stats_id],
        )
        assert _between(in_before, s.bytesReceived, in_after)
        assert _between(out_before, s.bytesSent, out_after)
    sent = sum(s.bytesSent for s in report.values() if s.type == "outbound-rtp")
    assert _between(before.payload_bytes_sent, sent, after.payload_bytes_sent)

    inbound = {
        (_suffix(s.id, "inbound-rtp_"), s.ssrc): s
        for s in report.values()
        if s.type == "inbound-rtp"
    }
    assert set(inbound) == {i.key for i in before.inbound} == {i.key for i in after.inbound}
    for b, a in zip(before.inbound, after.inbound, strict=True):
        s = inbound[b.key]
        assert s.kind == b.kind
        assert _between(b.packets_received, s.packetsReceived, a.packets_received)
        assert _between(b.packets_lost, s.packetsLost, a.packets_lost)

    remote = {
        _suffix(s.id, "remote-inbound-rtp_"): s
        for s in report.values()
        if s.type == "remote-inbound-rtp"
    }
    assert set(remote) == {r.key for r in before.reports}
    afterwards = {r.key: r for r in after.reports}
    for r in before.reports:
        s = remote[r.key]
        assert s.kind == r.kind
        seen = (s.timestamp.timestamp(), s.fractionLost, s.roundTripTime)
        candidates = [
            (pytest.approx(x.received_at, abs=1e-5), x.fraction_lost, x.round_trip_time)
            for x in (r, afterwards[r.key])
        ]
        assert seen in candidates
    return after


async def test_the_counters_are_what_get_stats_reports(harness: RoomHarness) -> None:
    await _two_publishers_reporting(harness)
    pcs = harness.room.peer_connections()
    assert len(pcs) == 4  # each participant's publish and subscribe connections
    read = [await _compare(pc) for pc in pcs]
    # Not vacuous: the publishers' streams came in, the subscribers reported, bytes moved.
    assert sum(len(c.inbound) for c in read) == 4
    assert {i.kind for c in read for i in c.inbound} == {"audio", "video"}
    assert sum(i.packets_received for c in read for i in c.inbound) > 0
    assert sum(len(c.reports) for c in read) == 4
    assert all(r.round_trip_time is not None for c in read for r in c.reports)
    assert sum(c.payload_bytes_sent for c in read) > 0
    assert all(min(b) > 0 for c in read for b in c.transport_bytes.values())


async def test_the_sampler_reads_a_connection_a_turn_and_starts_no_statistics_task(
    harness: RoomHarness,
) -> None:
    """The metrics sampler never holds the event loop for more than one connection's
    read (getStats() made a task per track and, with the statistics objects, stopped the
    loop 5-19 ms per sample at 84 participants), and its figures reach the metrics."""
    await _two_publishers_reporting(harness)
    metrics = ServerMetrics("node-test")
    sampler = ReceiverReportSampler(lambda: harness.node, metrics, interval=3600)
    loop = asyncio.get_running_loop()
    statistics_tasks: list[str] = []
    default_factory = loop.get_task_factory()

    def counting_factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        if "getStats" in getattr(coro, "__qualname__", ""):
            statistics_tasks.append(coro.__qualname__)
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)  # type: ignore[return-value]
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting_factory)
    try:
        with LoopTurns() as turns:
            await sampler.sample()
    finally:
        loop.set_task_factory(default_factory)
    assert statistics_tasks == []
    # The loop turned between the connections: at least one turn for each.
    assert turns.count >= len(harness.room.peer_connections()) == 4

    def count(name: str, kind: str) -> float:
        value = metrics.registry.get_sample_value(name, {"kind": kind})
        return 0.0 if value is None else value

    # Each subscriber's report on each track, once (two tracks of each kind).
    assert count("yitang_receiver_loss_ratio_count", "video") == 2
    assert count("yitang_receiver_loss_ratio_count", "audio") == 2
    assert count("yitang_receiver_rtt_seconds_count", "video") == 2
    totals = sampler.totals()
    assert totals["transport_bytes:in"] > 0 and totals["transport_bytes:out"] > 0
    assert totals["upstream_lost:video"] == 0 and totals["upstream_lost:audio"] == 0
