"""ClusterNode: this process as one node of a deployment — its heartbeat, the rooms it
owns, the way its sockets reach other owners, and its drain on shutdown.

Every `heartbeat_seconds` the node: announces itself (and its load); renews
the leases of the rooms it owns (a room whose lease another node took is let
go); tells its rooms which participants' nodes died; follows the owners of the
rooms its sockets are in (taking a room whose owner died); lets go of rooms
that have been empty for a while. A failing step is logged and retried on the
next beat; none of them evicts anyone because Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from server.cluster.bus import Bus
from server.cluster.directory import DirectorySettings, RoomDirectory
from server.cluster.liveness import NodeLiveness
from server.cluster.local_sockets import LocalSockets
from server.cluster.messages import BusMessage, TakeRequest
from server.cluster.outbound import OwnerOutbound
from server.cluster.placement import Placement
from server.cluster.router import RoomRouter, RouterSettings
from server.media import MediaNode
from server.rooms.commands import RecordingChanged
from server.rooms.models import NodeRef
from server.rooms.owned_room import OwnerSettings
from server.rooms.ports import Recorder, RecordingUpdate
from server.state.connection import raise_if_cancelled
from server.state.leases import RoomLeases
from server.state.nodes import NodeInfo
from server.state.store import RedisStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSettings:
    """Timings of one node's part in the deployment."""

    heartbeat_seconds: float = 2.0
    #: A node's heartbeat and its rooms' leases expire this long after its last beat.
    lease_ttl_seconds: float = 6.0
    #: A drain (SIGTERM) hands rooms over and closes sockets within this long.
    drain_seconds: float = 10.0
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    router: RouterSettings = field(default_factory=RouterSettings)

    def __post_init__(self) -> None:
        if self.heartbeat_seconds <= 0 or self.lease_ttl_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError("the lease TTL must be more than two heartbeats")


class ClusterNode:
    """Everything this node does with other nodes and the rooms it owns."""

    def __init__(
        self,
        *,
        info: NodeInfo,
        store: RedisStore,
        bus_client: aioredis.Redis,
        local: LocalSockets,
        media_node: MediaNode,
        recorder: Recorder | None,
        owner_settings: OwnerSettings,
        settings: ClusterSettings,
    ) -> None:
        self.settings = settings
        self.liveness = NodeLiveness(store, info, settings.lease_ttl_seconds)
        self.leases = RoomLeases(store.client, info.id, settings.lease_ttl_seconds)
        self.bus = Bus(bus_client, info.id, self._on_bus_message, self._on_bus_reconnected)
        self.ref = NodeRef(id=info.id, url=info.url)
        self.placement = Placement(info.id, settings.directory.max_rooms)
        self.directory = RoomDirectory(
            node=self.ref,
            store=store,
            leases=self.leases,
            delivery=OwnerOutbound(info.id, local, self.bus),
            media_node=media_node,
            recorder=recorder,
            owner_settings=owner_settings,
            settings=settings.directory,
            live_nodes=self.live_node_refs,
        )
        self.router = RoomRouter(
            node_id=info.id,
            directory=self.directory,
            bus=self.bus,
            leases=self.leases,
            store=store,
            local=local,
            placement=self.placement,
            judge_dead=self.liveness.dead,
            settings=settings.router,
        )
        self.local = local
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.ref.id

    def live_node_refs(self) -> list[NodeRef]:
        """Live nodes clients may reconnect to (draining ones left out)."""
        return [
            NodeRef(id=n.id, url=n.url) for n in self.liveness.live_nodes if not n.draining
        ] or [self.ref]

    async def start(self) -> None:
        """Announce the node, connect the bus and start the heartbeat."""
        await self.liveness.beat()
        self.placement.update(self.liveness.live_nodes)
        await self.bus.start()
        self._loop_task = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")

    async def beat(self) -> None:
        """One heartbeat (see the module docstring)."""
        redis_ok = await self.liveness.beat(
            participants=self.directory.participant_count(),
            rooms=len(self.directory.owned()),
            draining=self.directory.draining,
        )
        if not redis_ok:
            return
        self.placement.update(self.liveness.live_nodes)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("renewing leases", self.directory.renew),
            ("judging nodes", self._forget_dead_nodes),
            ("following owners", self.router.check_rooms),
            ("releasing idle rooms", self.directory.release_idle),
        ]
        for what, step in steps:
            try:
                await step()
            except Exception as exc:
                logger.warning("heartbeat: %s failed: %s", what, exc)

    async def _forget_dead_nodes(self) -> None:
        dead = await self.liveness.dead(self.directory.participant_nodes())
        if dead:
            logger.info("nodes %s are gone; forgetting their participants", sorted(dead))
        self.directory.nodes_gone(dead)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_seconds
        next_beat = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
            next_beat += interval
            if next_beat < time.monotonic():  # the loop fell behind (a stall): do not burst
                next_beat = time.monotonic() + interval
            try:
                await self.beat()
            except Exception:
                logger.exception("heartbeat failed")
            raise_if_cancelled()

    def recording_changed(self, update: RecordingUpdate, room_id: str, failed: bool) -> None:
        """The recorder reports a change of a room this node owns."""
        actor = self.directory.actor(room_id)
        if actor is not None:
            actor.post(RecordingChanged(update, failed))

    # --- the bus --------------------------------------------------------------------------

    async def _on_bus_message(self, channel: str, message: BusMessage) -> None:
        await self.router.on_bus_message(channel, message)

    async def _on_bus_reconnected(self) -> None:
        await self.router.reconcile_all()

    # --- shutting down ----------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop taking rooms, hand the owned ones to other nodes, send the sockets elsewhere.

        Bounded by `drain_seconds`: rooms get all but the last two seconds (a room whose
        hand-over did not finish is taken by the next node that needs it, once its lease
        runs out), then the sockets are told where to go and closed.
        """
        self.directory.draining = True
        with contextlib.suppress(Exception):
            await self.liveness.beat(draining=True)
        await self.local.quiesce()
        try:
            async with asyncio.timeout(max(self.settings.drain_seconds - 2.0, 1.0)):
                for room_id in self.directory.owned():
                    await self._hand_over(room_id)
        except TimeoutError:
            logger.warning(
                "drain: rooms not all handed over within %ss", self.settings.drain_seconds
            )
        others = [n for n in self.live_node_refs() if n.id != self.node_id]
        try:
            async with asyncio.timeout(2.0):
                await self.local.hand_off(others)
        except TimeoutError:
            logger.warning("drain: sockets not all told to reconnect")

    async def _hand_over(self, room_id: str) -> None:
        successor = self.liveness.successor()
        written = await self.directory.release(room_id)
        if successor is None or not written:
            return
        take = TakeRequest(id=self.bus.new_id(), reply_to=self.node_id, room=room_id)
        try:
            await self.bus.request(successor.id, take, self.settings.router.reply_timeout)
            logger.info("room %s handed over to %s", room_id, successor.id)
        except Exception as exc:
            logger.warning("room %s: %s did not take it (%s)", room_id, successor.id, exc)

    async def close(self) -> None:
        """Stop the heartbeat and the bus; let go of the rooms still owned."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.directory.close()
        await self.router.close()
        await self.bus.close()
        with contextlib.suppress(Exception):
            await self.liveness.store.remove_node(self.node_id)
