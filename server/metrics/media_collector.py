"""The media layer's counters, read when `/metrics` is scraped.

The forwarding path counts in plain integer attributes of the objects doing
the work (a forwarder per published track, a sender per subscriber and track);
nothing is added to it for metrics. Before each scrape (`MediaCollector.refresh`)
the open rooms are walked through the one accessor below
(:func:`read_media_counters`), a peer connection per turn of the event loop,
and the totals are kept monotonic as those objects come and go
(`RetainedTotals`), a counter group per turn: at 84 participants (~1 800
senders, ~9 000 counters) doing all of it in one go held the loop ~35 ms, every
packet of the node waiting meanwhile, at every scrape. Wire bytes and
publishers' upstream loss come from the receiver-report sampler, which reads
the peer connections' counters every few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.media import MediaError, MediaNode, outbound_srtp
from server.media.forwarding_sender import ForwardingSender
from server.media.quality_tiers import LEVEL_NAMES
from server.metrics.receiver_reports import ReceiverReportSampler
from server.metrics.retained import RetainedTotals

KINDS = ("audio", "video")


@dataclass
class MediaCounters:
    """What one look at the media layer found (counters per object, gauges summed)."""

    rooms: int = 0
    #: "metric:kind" -> {object key: count}: per-object counters, for RetainedTotals.
    counters: dict[str, dict[Hashable, float]] = field(default_factory=dict)
    published_tracks: dict[str, int] = field(default_factory=dict)
    #: (kind, state) -> senders: `active` forwarding, `paused` (last-N, view, link level).
    forwarded_tracks: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (protector, profile) -> subscribe transports (outbound_srtp.describe).
    outbound_srtp: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Link level ("full", "reduced", "audio_only") -> subscribers at it.
    receiver_levels: dict[str, int] = field(default_factory=dict)

    def add(self, metric: str, kind: str, key: Hashable, value: float) -> None:
        """Record one object's counter (by media kind)."""
        self.count(f"{metric}:{_kind(kind)}", key, value)

    def count(self, group: str, key: Hashable, value: float) -> None:
        """Record one object's counter in a group of its own."""
        self.counters.setdefault(group, {})[key] = value


def _kind(kind: str) -> str:
    return kind if kind in KINDS else "other"


async def read_media_counters(node: MediaNode) -> MediaCounters:
    """Read every open room's forwarders and senders, yielding to the event loop after
    each room's forwarders and after each peer connection (no I/O)."""
    found = MediaCounters()
    for room in list(node.rooms.values()):
        found.rooms += 1
        for track in room.tracks():
            try:
                forwarder = room.track_forwarder(track.track_id)
            except MediaError:
                continue
            kind = _kind(forwarder.kind)
            found.published_tracks[kind] = found.published_tracks.get(kind, 0) + 1
            key = id(forwarder)
            found.add("packets_received", kind, key, forwarder.packets_received)
            found.add("keyframe_requests", kind, key, forwarder.keyframe_requests)
            found.add("plis_sent", kind, key, forwarder.plis_sent)
        for link in room.receiver_links().values():
            if link.connected:
                found.receiver_levels[link.level] = found.receiver_levels.get(link.level, 0) + 1
            found.count("level_steps:down", link.counter_key, link.steps_down)
            found.count("level_steps:up", link.counter_key, link.steps_up)
        await asyncio.sleep(0)
        for pc in room.peer_connections():
            transports = set()
            for sender in pc.getSenders():
                if not isinstance(sender, ForwardingSender):
                    continue
                transports.add(sender.transport)
                kind = _kind(sender.kind)
                key = id(sender)
                if sender.running:
                    state = "paused" if sender.paused else "active"
                    found.forwarded_tracks[(kind, state)] = (
                        found.forwarded_tracks.get((kind, state), 0) + 1
                    )
                channel = sender.channel
                if channel is not None:
                    found.add("packets_forwarded", kind, key, channel.packets_sent)
                    found.add("payload_bytes_forwarded", kind, key, channel.octets_sent)
                found.add("forward_drops", kind, key, sender.packets_dropped)
                found.add("queue_overflows", kind, key, sender.overflows)
                found.add("nacks_received", kind, key, sender.nacks_received)
            for transport in transports:  # one per subscriber (bundled)
                how = outbound_srtp.describe(transport)
                if how is not None:
                    found.outbound_srtp[how] = found.outbound_srtp.get(how, 0) + 1
            await asyncio.sleep(0)
    return found


#: Counter families built from MediaCounters: (metric key, name, help).
COUNTERS = (
    ("packets_received", "yitang_media_packets_received", "RTP packets received from publishers"),
    ("packets_forwarded", "yitang_media_packets_forwarded", "RTP packets sent to subscribers"),
    (
        "payload_bytes_forwarded",
        "yitang_media_payload_bytes_forwarded",
        "RTP payload bytes sent to subscribers",
    ),
    (
        "forward_drops",
        "yitang_media_forward_drops",
        "Packets not forwarded to a subscriber (queue overflow, waiting for a keyframe, pause)",
    ),
    (
        "queue_overflows",
        "yitang_media_queue_overflows",
        "Times a subscriber's forwarding queue was full",
    ),
    (
        "nacks_received",
        "yitang_media_nacks_received",
        "Packets subscribers asked for again (RTCP NACK)",
    ),
    (
        "keyframe_requests",
        "yitang_media_keyframe_requests",
        "Keyframes asked of a track (subscriber PLI/FIR, new subscribers, overflows)",
    ),
    ("plis_sent", "yitang_media_plis_sent", "RTCP PLIs sent to publishers (rate-limited)"),
)


class MediaCollector(Collector):
    """Media metrics of this node's open rooms, as read by the last :meth:`refresh`."""

    def __init__(
        self, media_node: Callable[[], MediaNode | None], sampler: ReceiverReportSampler
    ) -> None:
        self._media_node = media_node
        self._sampler = sampler
        self._totals = RetainedTotals()
        self._found = MediaCounters()
        self._group_totals: dict[str, float] = {}
        # One walk at a time: two interleaved would feed the totals older values
        # after newer ones, which read as objects counting from zero again.
        self._walking = asyncio.Lock()

    async def refresh(self) -> None:
        """Walk the rooms now (before a scrape), a peer connection per turn of the event
        loop, then take the totals, a counter group per turn."""
        async with self._walking:
            node = self._media_node()
            found = await read_media_counters(node) if node is not None else MediaCounters()
            totals: dict[str, float] = {}
            for group in sorted(self._totals.groups() | found.counters.keys()):
                totals[group] = self._totals.update_group(group, found.counters.get(group, {}))
                await asyncio.sleep(0)
            self._found, self._group_totals = found, totals

    def describe(self) -> list[Metric]:
        """Nothing up front (the registry would otherwise collect at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The media families, from the last walk of the rooms (:meth:`refresh`)."""
        found, totals = self._found, self._group_totals
        yield GaugeMetricFamily("yitang_media_rooms", "Open media rooms", value=found.rooms)
        published = GaugeMetricFamily(
            "yitang_published_tracks", "Tracks published to this node", labels=["kind"]
        )
        forwarded = GaugeMetricFamily(
            "yitang_forwarded_tracks",
            "Track copies sent to subscribers: `active`, or `paused` (last-N, a hidden tile, "
            "or the receiver's link level)",
            labels=["kind", "state"],
        )
        for kind in KINDS:
            published.add_metric([kind], found.published_tracks.get(kind, 0))
            for state in ("active", "paused"):
                forwarded.add_metric([kind, state], found.forwarded_tracks.get((kind, state), 0))
        yield published
        yield forwarded
        protection = GaugeMetricFamily(
            "yitang_outbound_srtp_transports",
            "Subscribe transports by how the RTP they send is protected: `compiled` (the "
            "node's own AES-GCM) or `libsrtp`, and the DTLS-SRTP profile negotiated",
            labels=["protector", "profile"],
        )
        for (protector, profile), count in sorted(found.outbound_srtp.items()):
            protection.add_metric([protector, profile], count)
        yield protection
        receivers = GaugeMetricFamily(
            "yitang_receivers",
            "Subscribers by the level of their link (quality tiers): `full`, `reduced` (the "
            "spotlight in low quality), `audio_only` (no video)",
            labels=["link_level"],
        )
        for level in LEVEL_NAMES:
            receivers.add_metric([level], found.receiver_levels.get(level, 0))
        yield receivers
        steps = CounterMetricFamily(
            "yitang_receiver_level_steps",
            "Steps of subscribers' link levels, `down` (a weak link) and `up` (clean again, "
            "or a probe where nothing judged the link)",
            labels=["direction"],
        )
        for direction in ("down", "up"):
            steps.add_metric([direction], totals.get(f"level_steps:{direction}", 0.0))
        yield steps
        for key, name, documentation in COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["kind"])
            for kind in KINDS:
                family.add_metric([kind], totals.get(f"{key}:{kind}", 0.0))
            yield family
        sampled = self._sampler.totals()
        transport = CounterMetricFamily(
            "yitang_media_transport_bytes",
            "Bytes on this node's media transports (SRTP/SRTCP, sampled every few seconds)",
            labels=["direction"],
        )
        for direction in ("in", "out"):
            transport.add_metric([direction], sampled.get(f"transport_bytes:{direction}", 0.0))
        yield transport
        upstream = CounterMetricFamily(
            "yitang_media_upstream_packets_lost",
            "Packets lost between publishers and this node (sampled every few seconds)",
            labels=["kind"],
        )
        for kind in KINDS:
            upstream.add_metric([kind], sampled.get(f"upstream_lost:{kind}", 0.0))
        yield upstream
