"""The media layer's metrics (server/metrics/media_collector.py): read before a scrape,
a peer connection per turn of the event loop. Real aiortc peers through a media node."""

from __future__ import annotations

from media_testkit import LoopTurns, RoomHarness

from server.metrics.media_collector import MediaCollector
from server.metrics.receiver_reports import ReceiverReportSampler
from server.metrics.server_metrics import ServerMetrics


def _value(collector: MediaCollector, name: str, **labels: str) -> float:
    for family in collector.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} not exported")


async def test_a_scrape_reads_the_media_layer_a_connection_per_turn_of_the_loop(
    harness: RoomHarness,
) -> None:
    """At 84 participants reading every sender's counters in one go held the event loop
    ~35 ms per scrape; the walk yields after each peer connection and each counter group,
    and what it read is what the next exposition shows."""
    for name in ("alice", "bob"):
        await harness.client(name, width=64, height=48).join()
    senders = lambda: [  # noqa: E731
        s for pc in harness.room.peer_connections() for s in pc.getSenders()
        if getattr(s, "channel", None) is not None and s.channel.packets_sent > 0
    ]  # fmt: skip
    await harness.wait_until(lambda: len(senders()) == 4, "each track forwarded to the other")
    metrics = ServerMetrics("node-test")
    sampler = ReceiverReportSampler(lambda: harness.node, metrics, interval=3600)
    collector = MediaCollector(lambda: harness.node, sampler)
    assert _value(collector, "yitang_media_rooms") == 0  # nothing read yet

    with LoopTurns() as turns:
        await collector.refresh()
    pcs = len(harness.room.peer_connections())
    assert pcs == 4
    # The room's forwarders, its four connections, then the sixteen counter groups (five
    # of senders and three of forwarders, for each kind): a turn each at least.
    assert turns.count >= 1 + pcs + 16
    assert _value(collector, "yitang_media_rooms") == 1
    assert _value(collector, "yitang_published_tracks", kind="video") == 2
    assert _value(collector, "yitang_forwarded_tracks", kind="audio", state="active") == 2
    forwarded = _value(collector, "yitang_media_packets_forwarded_total", kind="video")
    assert forwarded >= 2  # at least the packets counted when the wait above ended
    assert _value(collector, "yitang_media_packets_received_total", kind="audio") > 0
    # Both receive at the full level; the control room's cap on one shows at once.
    assert _value(collector, "yitang_receivers", link_level="full") == 2
    harness.room.set_quality_cap("alice", receive="audio_only")
    await collector.refresh()
    assert _value(collector, "yitang_receivers", link_level="full") == 1
    assert _value(collector, "yitang_receivers", link_level="audio_only") == 1
    assert _value(collector, "yitang_receiver_level_steps_total", direction="down") == 0

    # A participant leaving takes its senders and forwarders; the totals keep what
    # they had counted.
    await harness.clients["bob"].close()
    await harness.room.remove_participant("bob")
    await collector.refresh()
    assert _value(collector, "yitang_published_tracks", kind="video") == 1
    assert _value(collector, "yitang_media_packets_forwarded_total", kind="video") >= forwarded
