"""Housekeeping of one node: heartbeat, presence refresh, and sweeps of what expired.

Every node runs this. The sweeps are idempotent (compare-and-set in Redis), so
when several nodes notice the same expired floor or presence, one wins and the
others change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from server.rooms.service import ConsultationService
from server.state.nodes import NodeInfo
from server.state.store import now_ms

logger = logging.getLogger(__name__)

#: How often floor deadlines are checked; the precision of speaking-time limits.
FLOOR_CHECK_SECONDS = 0.25


class Housekeeper:
    """Runs the periodic duties of a node until cancelled."""

    def __init__(
        self,
        service: ConsultationService,
        node: NodeInfo,
        heartbeat_seconds: float,
        ttl_seconds: float,
    ) -> None:
        self.service = service
        self.node = node
        self.heartbeat_seconds = heartbeat_seconds
        self.ttl_seconds = ttl_seconds

    async def beat(self) -> None:
        """Announce the node and keep its participants present; forget the vanished."""
        self.node = self.node.model_copy(update={"participants": len(self.service.local_sessions)})
        await self.service.store.heartbeat_node(self.node, self.ttl_seconds)
        await self.service.refresh_local_presence()
        swept = await self.service.sweep_expired_presence()
        if swept:
            logger.info("forgot %d participants whose node stopped", swept)
        await self.service.close_finished_media()

    async def expire_floors(self) -> None:
        """Return the floor of every room whose speaking time ran out."""
        for room_id in await self.service.store.rooms_with_floor_due(now_ms()):
            await self.service.expire_floor(room_id)

    async def run(self) -> None:
        """Loop until cancelled; an error in one round is logged and the next round runs."""
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    await self.beat()
                    next_beat = time.monotonic() + self.heartbeat_seconds
                await self.expire_floors()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("housekeeping round failed")
            await asyncio.sleep(FLOOR_CHECK_SECONDS)
