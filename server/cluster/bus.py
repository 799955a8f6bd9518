"""Bus: messages between nodes over Redis pub/sub, with requests and replies.

Why Redis pub/sub rather than a direct node-to-node channel: every node
already reaches the same Redis, nodes need no address reachable by each other
(nor one more port, certificate or peer list), and it is what LiveKit's
psrpc does. Pub/sub delivers nothing to a node that is not connected, so the
bus makes loss visible instead of hiding it:

* messages go out in order from one publisher task per node; while Redis is
  unreachable they wait (bounded) and go out when it is back;
* a request whose node channel has no subscriber (the node is dead) fails at
  once instead of waiting for its timeout;
* after the subscriber connection comes back, `on_reconnected` runs: the edge
  then reconciles every room it holds sockets in, so whatever was missed is
  made good by a fresh snapshot.

Each node listens on its own channel (requests for rooms it owns, replies,
events and closes for its sockets) and on the channel of each room it holds
sockets in (the room's broadcasts).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from server.cluster.messages import BusMessage, Envelope, Reply, Request, parse
from server.rooms import acks
from server.state import keys
from server.state.connection import raise_if_cancelled

logger = logging.getLogger(__name__)

#: Messages waiting for Redis at most; older ones are dropped beyond this (the edges'
#: reconciliation after the outage repairs what they carried).
MAX_OUTBOX = 50_000
#: Messages per pipelined round trip.
PUBLISH_BATCH = 256

Handler = Callable[[str, BusMessage], Awaitable[None]]


class NodeUnreachable(Exception):
    """No node listens on the channel a request was sent to."""


@dataclass
class _Outgoing:
    channel: str
    data: str
    #: For requests: told how many nodes received it (0: nobody listens).
    receivers: asyncio.Future[int] | None = None


class Bus:
    """One node's connection to the others."""

    def __init__(
        self,
        client: aioredis.Redis,
        node_id: str,
        on_message: Handler,
        on_reconnected: Callable[[], Awaitable[None]],
    ) -> None:
        self._redis: Any = client
        self.node_id = node_id
        self._on_message = on_message
        self._on_reconnected = on_reconnected
        self._rooms: dict[str, int] = {}
        self._pubsub: Any = None
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        #: Whether the subscriber connection is up (the node hears the others).
        self.connected = False

    async def start(self) -> None:
        """Subscribe and start the listener and the publisher (returns once subscribed)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="bus-listen"),
            asyncio.create_task(self._publish_loop(), name="bus-publish"),
        ]
        await self._subscribed.wait()

    async def close(self) -> None:
        """Stop listening and publishing (what is still queued is dropped)."""
        for task in [*self._tasks, *self._handlers]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)
        self._tasks = []
        await self._close_pubsub()
        for future in self._replies.values():
            if not future.done():
                future.cancel()

    # --- sending --------------------------------------------------------------------------

    def publish(self, channel: str, message: BaseModel) -> None:
        """Send a message on a channel, after every message sent before it."""
        self._queue(_Outgoing(channel, message.model_dump_json()))

    def send_to_node(self, node_id: str, message: BaseModel) -> None:
        """Send a message to one node."""
        self.publish(keys.node_channel(node_id), message)

    def _queue(self, item: _Outgoing) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            dropped = self._outbox.popleft()
            if dropped.receivers is not None and not dropped.receivers.done():
                dropped.receivers.set_result(0)
            logger.warning("bus outbox full; dropped a message to %s", dropped.channel)
        self._outbox.append(item)
        self._outbox_ready.set()

    async def request(self, node_id: str, request: Request, timeout: float) -> acks.Ack:
        """Send a request to a node and wait for its reply.

        NodeUnreachable if no node listens on its channel; TimeoutError if the reply
        does not come in time (the request may or may not have been applied).
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()
        receivers: asyncio.Future[int] = loop.create_future()
        self._replies[request.id] = reply
        try:
            envelope = Envelope(request=request)
            self._queue(
                _Outgoing(keys.node_channel(node_id), envelope.model_dump_json(), receivers)
            )
            async with asyncio.timeout(timeout):
                if await receivers == 0:
                    raise NodeUnreachable(node_id)
                return await reply
        finally:
            self._replies.pop(request.id, None)

    def reply(self, node_id: str, request_id: str, ack: acks.Ack) -> None:
        """Answer a request from `node_id`."""
        self.send_to_node(node_id, Reply(id=request_id, ack=ack))

    @staticmethod
    def new_id() -> str:
        """A fresh request id."""
        return uuid.uuid4().hex

    async def _publish_loop(self) -> None:
        backoff = 0.05
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            batch = [self._outbox[i] for i in range(min(PUBLISH_BATCH, len(self._outbox)))]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(item.channel, item.data)
                    counts = await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("bus: publishing failed (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            for item, count in zip(batch, counts, strict=True):
                if self._outbox and self._outbox[0] is item:
                    self._outbox.popleft()
                if item.receivers is not None and not item.receivers.done():
                    item.receivers.set_result(int(count))

    # --- listening ------------------------------------------------------------------------

    async def join_room(self, room_id: str) -> None:
        """Receive the room's broadcasts (counted: one call per socket that needs them)."""
        count = self._rooms.get(room_id, 0)
        self._rooms[room_id] = count + 1
        if count == 0 and self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.subscribe(keys.room_channel(room_id))

    async def leave_room(self, room_id: str) -> None:
        """Undo one `join_room`; the last one stops the room's broadcasts."""
        count = self._rooms.get(room_id, 0) - 1
        if count > 0:
            self._rooms[room_id] = count
            return
        self._rooms.pop(room_id, None)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(keys.room_channel(room_id))

    async def _listen(self) -> None:
        backoff = 0.05
        first = True
        while True:
            try:
                await self._open_pubsub()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("bus: cannot subscribe (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self.connected = True
            self._subscribed.set()
            if not first:
                logger.info("bus: connected again")
                self._spawn(self._on_reconnected())
            first = False
            try:
                await self._receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("bus: connection lost (%s)", exc)
            self.connected = False
            await self._close_pubsub()

    async def _open_pubsub(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        channels = [keys.node_channel(self.node_id)] + [keys.room_channel(r) for r in self._rooms]
        try:
            await pubsub.subscribe(*channels)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        self._pubsub = pubsub

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _receive(self) -> None:
        pubsub = self._pubsub
        # Rooms joined while the connection was being opened are subscribed now.
        missing = [keys.room_channel(r) for r in self._rooms]
        if missing:
            await pubsub.subscribe(*missing)
        while True:
            # A bounded wait: the client's health check (a PING while idle) runs in here.
            message = await pubsub.get_message(timeout=1.0)
            raise_if_cancelled()
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            try:
                parsed = parse(message["data"])
            except ValidationError:
                logger.warning("bus: unreadable message on %s dropped", channel)
                continue
            if isinstance(parsed, Reply):
                future = self._replies.get(parsed.id)
                if future is not None and not future.done():
                    future.set_result(parsed.ack)
                continue
            if isinstance(parsed, Envelope):
                # Requests may take a while (an actor's queue): never hold up the listener.
                self._spawn(self._on_message(channel, parsed))
                continue
            try:
                await self._on_message(channel, parsed)
            except Exception:
                logger.exception("bus: handling a message on %s failed", channel)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                logger.exception("bus: handler failed")

        task = asyncio.create_task(run())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if isinstance(work, Coroutine):
            # Cancelled (the bus closing) before it started: close the handler's coroutine
            # so it is not reported as never awaited (a no-op once it ran).
            task.add_done_callback(lambda _: work.close())
