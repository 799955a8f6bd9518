"""Typed events a room reports to its owner, and their in-order delivery.

The callback given to ``MediaNode.room()`` receives these events one at a time,
in the order they happened, from a single dispatcher task per room. It may be
a plain function or a coroutine function (awaited before the next event);
exceptions it raises are logged and do not stop delivery.
"""

from __future__ import annotations

import asyncio
import collections
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

    Offers are serialised: the next one comes only after the answer to this one,
    or after the participant's subscribe connection was replaced (``resubscribe``,
    or a failure), which makes an unanswered older offer void. Offers are never
    dropped by the event backlog; an undelivered one is replaced by a newer one.
    """

    participant_id: str
    sdp: str


@dataclass(frozen=True)
class ActiveSpeaker:
    """The room's active speaker changed (None: the speaker left).

    Sent again when a participant is added, for the owner to pass on to the newcomer
    (who would otherwise not know who is speaking until the speaker changes).
    """

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


@dataclass(frozen=True)
class VideoQuality:
    """What one receiver's link lets it receive changed (tell that participant's UI).

    ``level`` is "full" (spotlight in the high encoding), "reduced" (spotlight in
    the low one) or "audio_only"; ``paused`` is how many publishers' video that
    receiver does not get because of its link (not counting hidden tiles);
    ``capped``: the control room's cap, not the link, sets the level.
    """

    participant_id: str
    level: str
    paused: int
    capped: bool = False


@dataclass(frozen=True)
class PublisherHint:
    """The publisher's uplink loses packets: cap its high encoding at ``max_bitrate``
    bit/s (the client applies it with ``RTCRtpSender.setParameters``); None: no cap."""

    participant_id: str
    max_bitrate: int | None


MediaEvent = (
    SubscriberOffer
    | ActiveSpeaker
    | TracksChanged
    | ParticipantMediaState
    | AudioLevels
    | VideoQuality
    | PublisherHint
)
EventCallback = Callable[[MediaEvent], Awaitable[None] | None]


class EventDispatcher:
    """Delivers events to one callback, in order, from one task; bounded backlog.

    At most ``max_pending`` undelivered events are kept; beyond that new events
    are dropped (counted in :attr:`dropped`), except :class:`SubscriberOffer`:
    a lost offer would leave its participant waiting for an answer forever, so
    offers are never dropped. They cannot pile up either: at most one offer per
    participant is pending, a newer one replacing it (it can only come from a
    fresh connection, which makes the older offer unanswerable).
    """

    def __init__(self, callback: EventCallback | None, *, max_pending: int, name: str) -> None:
        self._callback = callback
        self._max_pending = max_pending
        self._queue: collections.deque[MediaEvent] = collections.deque()
        #: The undelivered offer of each participant (also in ``_queue``).
        self._offers: dict[str, SubscriberOffer] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._name = name
        self._closed = False
        self.dropped = 0
        self.offers_replaced = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered."""
        return len(self._queue)

    def emit(self, event: MediaEvent) -> None:
        """Queue ``event`` for delivery (never blocks; see the class docstring for drops)."""
        if self._callback is None or self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"media-events-{self._name}")
        if isinstance(event, SubscriberOffer):
            older = self._offers.get(event.participant_id)
            if older is not None:
                self._remove(older)
                self.offers_replaced += 1
            self._offers[event.participant_id] = event
        elif len(self._queue) - len(self._offers) >= self._max_pending:
            self.dropped += 1
            logger.warning("%s: event backlog full, dropping %s", self._name, type(event).__name__)
            return
        self._queue.append(event)
        self._wakeup.set()

    def _remove(self, offer: SubscriberOffer) -> None:
        for index, queued in enumerate(self._queue):
            if queued is offer:
                del self._queue[index]
                return

    async def _run(self) -> None:
        assert self._callback is not None
        queue = self._queue
        while True:
            if not queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = queue.popleft()
            if isinstance(event, SubscriberOffer) and (
                self._offers.get(event.participant_id) is event
            ):
                del self._offers[event.participant_id]
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
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        await asyncio.wait({task}, timeout=drain_timeout)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._queue.clear()
        self._offers.clear()
