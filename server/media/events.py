"""Typed events a room reports to its owner, and their in-order delivery.

The callback given to ``MediaNode.room()`` receives these events one at a time,
in the order they happened, from a single dispatcher task per room. It may be
a plain function or a coroutine function (awaited before the next event);
exceptions it raises are logged and do not stop delivery.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

ConnectionName = Literal["publish", "subscribe"]


@dataclass(frozen=True)
class SubscriberOffer:
    """Send ``sdp`` (type "offer") to the participant; reply with ``room.subscriber_answer``.

    Each offer supersedes nothing: offers are serialised, the next one comes only
    after the answer to this one.
    """

    participant_id: str
    sdp: str


@dataclass(frozen=True)
class ActiveSpeaker:
    """The room's active speaker changed (None: the speaker left)."""

    participant_id: str | None


@dataclass(frozen=True)
class TrackInfo:
    """A published track. In subscriber SDP its msid is ``participant_id track_id``."""

    track_id: str
    participant_id: str
    kind: str
    codec: str


@dataclass(frozen=True)
class TracksChanged:
    """The set of published tracks in the room changed; ``tracks`` is the full set."""

    tracks: tuple[TrackInfo, ...]


@dataclass(frozen=True)
class ParticipantMediaState:
    """Connection state of one of a participant's peer connections (for the UI).

    ``state`` is aiortc's connectionState: new, connecting, connected, failed,
    closed. On failed/closed the connection has been released; a new publish
    offer (publish) or ``room.resubscribe()`` (subscribe) starts a fresh one.
    """

    participant_id: str
    connection: ConnectionName
    state: str


@dataclass(frozen=True)
class AudioLevels:
    """Smoothed audio level per participant in dBov (-127 silence .. 0 loudest)."""

    levels: Mapping[str, float]


MediaEvent = SubscriberOffer | ActiveSpeaker | TracksChanged | ParticipantMediaState | AudioLevels
EventCallback = Callable[[MediaEvent], Awaitable[None] | None]


class EventDispatcher:
    """Delivers events to one callback, in order, from one task; bounded backlog."""

    def __init__(self, callback: EventCallback | None, *, max_pending: int, name: str) -> None:
        self._callback = callback
        self._queue: asyncio.Queue[MediaEvent | None] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self._name = name
        self._closed = False
        self.dropped = 0

    def emit(self, event: MediaEvent) -> None:
        """Queue ``event`` for delivery (never blocks; drops when the backlog is full)."""
        if self._callback is None or self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"media-events-{self._name}")
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("%s: event backlog full, dropping %s", self._name, type(event).__name__)

    async def _run(self) -> None:
        assert self._callback is not None
        while True:
            event = await self._queue.get()
            if event is None:
                return
            try:
                result = self._callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "%s: event callback failed on %s", self._name, type(event).__name__
                )

    async def close(self, *, drain_timeout: float = 1.0) -> None:
        """Deliver what is queued (up to ``drain_timeout`` seconds), then stop."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        try:
            self._queue.put_nowait(None)
            await asyncio.wait_for(asyncio.shield(task), drain_timeout)
        except (asyncio.QueueFull, TimeoutError):
            pass
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
