"""Socket.IO fan-out between server processes over the shared Redis.

python-socketio's AsyncRedisManager makes a fresh Redis client each time it
(re)connects — once for the first publish and again when its listener starts —
and drops the previous one without closing it. This subclass keeps the clients
it replaces and closes them all on shutdown, so no connection is leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import socketio


class RedisFanout(socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager that closes every Redis client it created."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel)
        self._retired: list[Any] = []

    def _redis_connect(self) -> None:
        self._retired.extend(c for c in (self.redis, self.pubsub) if c is not None)
        super()._redis_connect()

    async def aclose(self) -> None:
        """Stop listening and close every client (idempotent)."""
        listener = getattr(self, "thread", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            self.thread = None
        current: list[Any] = [getattr(self, "pubsub", None), getattr(self, "redis", None)]
        clients = [*self._retired, *current]
        self._retired = []
        self.pubsub = self.redis = None
        self.connected = False
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
