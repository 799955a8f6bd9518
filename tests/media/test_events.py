"""The event dispatcher: in order, bounded, and never losing a subscriber offer."""

from __future__ import annotations

import asyncio

from server.media import ActiveSpeaker, MediaEvent, SubscriberOffer, TracksChanged
from server.media.events import EventDispatcher


async def test_subscriber_offers_are_never_dropped_when_the_backlog_is_full() -> None:
    delivered: list[MediaEvent] = []
    busy = asyncio.Event()
    release = asyncio.Event()
    all_delivered = asyncio.Event()

    async def slow_owner(event: MediaEvent) -> None:
        busy.set()
        await release.wait()  # e.g. a signaling layer stuck on a slow client
        delivered.append(event)
        if isinstance(event, SubscriberOffer) and event.participant_id == "carol":
            all_delivered.set()

    dispatcher = EventDispatcher(slow_owner, max_pending=3, name="test")
    dispatcher.emit(ActiveSpeaker("first"))  # taken by the task, which then blocks
    await asyncio.wait_for(busy.wait(), 5)
    for i in range(10):
        dispatcher.emit(ActiveSpeaker(f"s{i}"))  # 3 fit, 7 are dropped
    dispatcher.emit(SubscriberOffer("alice", "offer-1"))
    dispatcher.emit(SubscriberOffer("bob", "offer-1"))
    dispatcher.emit(TracksChanged(()))  # still dropped: offers do not use the quota
    # A fresh subscribe connection (resubscribe) re-offers before alice got her
    # first offer: the void one is replaced, so offers cannot pile up.
    dispatcher.emit(SubscriberOffer("alice", "offer-2"))
    dispatcher.emit(SubscriberOffer("carol", "offer-1"))
    release.set()
    await asyncio.wait_for(all_delivered.wait(), 2)  # carol's offer was not dropped
    assert delivered == [
        ActiveSpeaker("first"),
        ActiveSpeaker("s0"),
        ActiveSpeaker("s1"),
        ActiveSpeaker("s2"),
        SubscriberOffer("bob", "offer-1"),
        SubscriberOffer("alice", "offer-2"),
        SubscriberOffer("carol", "offer-1"),
    ]
    assert dispatcher.dropped == 8
    assert dispatcher.offers_replaced == 1
    # Once the backlog drains, ordinary events are accepted again.
    dispatcher.emit(ActiveSpeaker("later"))
    await dispatcher.close()
    assert delivered[-1] == ActiveSpeaker("later")
    assert dispatcher.pending == 0


async def test_close_delivers_the_backlog_then_stops_even_if_the_owner_hangs() -> None:
    delivered: list[MediaEvent] = []

    def owner(event: MediaEvent) -> None:
        delivered.append(event)

    dispatcher = EventDispatcher(owner, max_pending=2, name="test")
    dispatcher.emit(SubscriberOffer("alice", "offer"))
    dispatcher.emit(ActiveSpeaker("alice"))
    await dispatcher.close()
    assert delivered == [SubscriberOffer("alice", "offer"), ActiveSpeaker("alice")]
    dispatcher.emit(ActiveSpeaker("bob"))  # after close: ignored
    assert dispatcher.pending == 0

    never = asyncio.Event()

    async def hung_owner(event: MediaEvent) -> None:
        await never.wait()

    stuck = EventDispatcher(hung_owner, max_pending=2, name="stuck")
    stuck.emit(SubscriberOffer("alice", "offer"))
    await stuck.close(drain_timeout=0.05)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "media-events-stuck"]
    assert all(t.done() for t in tasks)
