"""Rooms, participants and connections of this node, read when `/metrics` is scraped.

Participants are counted in the rooms this node owns (each room is owned by one
node, so the sum over nodes counts everyone once), by role and by the level of
their venue: four roles times four levels, whatever the rooms are called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.cluster.node import ClusterNode
from server.rooms.models import Level, Role


class RoomCollector(Collector):
    """Room and participant gauges of one node."""

    def __init__(
        self, cluster: Callable[[], ClusterNode | None], connections: Callable[[], int]
    ) -> None:
        self._cluster = cluster
        self._connections = connections

    def describe(self) -> list[Metric]:
        """Nothing up front (the registry would otherwise collect at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The gauges, from the owned rooms' in-memory state."""
        cluster = self._cluster()
        owned = 0
        by_role_level: Counter[tuple[str, str]] = Counter()
        draining = False
        if cluster is not None:
            directory = cluster.directory
            draining = directory.draining
            for room_id in directory.owned():
                actor = directory.actor(room_id)
                if actor is None:
                    continue
                owned += 1
                state = actor.room.state
                levels = {venue.id: venue.level.value for venue in state.room.venues}
                for participant in state.participants.values():
                    level = levels.get(participant.venue, "unknown")
                    by_role_level[(participant.role.value, level)] += 1
        yield GaugeMetricFamily("yitang_rooms_owned", "Rooms this node owns", value=owned)
        participants = GaugeMetricFamily(
            "yitang_participants",
            "Participants in the rooms this node owns, by role and venue level",
            labels=["role", "level"],
        )
        for role in Role:
            for level in Level:
                participants.add_metric(
                    [role.value, level.value], by_role_level.get((role.value, level.value), 0)
                )
        yield participants
        yield GaugeMetricFamily(
            "yitang_socketio_connections",
            "Socket.IO connections open on this node",
            value=self._connections(),
        )
        yield GaugeMetricFamily(
            "yitang_node_draining", "1 while this node drains (SIGTERM)", value=int(draining)
        )
