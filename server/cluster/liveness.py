"""NodeLiveness: this node's heartbeat, and when another node may be judged dead.

A node is dead when its heartbeat key has expired. But keys also expire while
Redis is down or unreachable, for every node at once; so this node judges
others only after it has itself reached Redis without a break for longer than
the heartbeat TTL — long enough for every live node to have heartbeated again.
A Redis outage therefore never makes a node evict participants of a healthy
one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from server.state.nodes import NodeInfo
from server.state.store import RedisStore

logger = logging.getLogger(__name__)


class NodeLiveness:
    """Heartbeats this node and judges the others."""

    def __init__(
        self,
        store: RedisStore,
        node: NodeInfo,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.node = node
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        #: Since when (monotonic) every heartbeat has reached Redis; None: the last one failed.
        self._healthy_since: float | None = None
        self._live: list[NodeInfo] = [node]

    @property
    def redis_healthy(self) -> bool:
        """Whether the last heartbeat reached Redis."""
        return self._healthy_since is not None

    @property
    def live_nodes(self) -> list[NodeInfo]:
        """The live nodes as of the last heartbeat (this one always included)."""
        return self._live

    async def beat(self, **load: int | bool) -> bool:
        """Announce this node (with its load); False if Redis could not be reached."""
        self.node = self.node.model_copy(update=load)
        try:
            await self.store.heartbeat_node(self.node, self.ttl_seconds)
            live = await self.store.live_nodes()
        except Exception as exc:
            if self._healthy_since is not None:
                logger.warning(
                    "heartbeat failed (%s): judging no node dead until Redis is back", exc
                )
            self._healthy_since = None
            return False
        if self._healthy_since is None:
            self._healthy_since = self._clock()
        self._live = live if any(n.id == self.node.id for n in live) else [self.node, *live]
        return True

    async def dead(self, node_ids: Iterable[str]) -> frozenset[str]:
        """Which of these nodes are dead (none while this node's view of Redis is too fresh)."""
        candidates = sorted(set(node_ids) - {self.node.id})
        if not candidates or self._healthy_since is None:
            return frozenset()
        if self._clock() - self._healthy_since < self.ttl_seconds:
            return frozenset()
        try:
            alive = await self.store.alive(candidates)
        except Exception:
            return frozenset()
        return frozenset(node_id for node_id, up in alive.items() if not up)

    def successor(self) -> NodeInfo | None:
        """The least loaded other live node that is not draining (for a hand-over), if any."""
        options = [n for n in self._live if not n.draining and n.id != self.node.id]
        return min(options, key=lambda n: (n.rooms, n.participants, n.id), default=None)
