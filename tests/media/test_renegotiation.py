"""A subscriber's renegotiation is coalesced: a burst of joins costs it a few offers.

Every venue joins at a session's start. One offer per join for every subscriber
already there is work (an SDP round trip, each side applying a description that
grows with the room) the start does not need: the subscribe connection folds
the room's changes into its next offer, made once no offer waits for its answer
and the offer interval since the last one has passed
(``MediaConfig.subscriber_offer_interval``). Offers are counted where the
client receives them.
"""

from __future__ import annotations

import asyncio
import time

from media_testkit import MediaTestClient, RoomHarness, loopback_config

#: Publishers joining in the burst.
BURST = 8
#: Their joins start this far apart (the load tool's joins are 50 ms apart; wider here,
#: so that without coalescing each join's offer is answered before the next join).
SPACING = 0.1


async def _receives_everyone(
    harness: RoomHarness, viewer: MediaTestClient, publishers: list[MediaTestClient], within: float
) -> None:
    await harness.wait_until(
        lambda: all(
            viewer.frames_from(p.participant_id, "video") >= 1
            and viewer.frames_from(p.participant_id, "audio") >= 1
            for p in publishers
        ),
        f"{viewer.participant_id} to receive every publisher's video and audio",
        within=within,
    )


async def test_a_burst_of_joining_publishers_costs_a_subscriber_a_few_offers_not_one_each() -> None:
    # An interval longer than the burst on a busy machine: the joins after the first
    # offer all fall into the next one.
    harness = RoomHarness(loopback_config(subscriber_offer_interval=3.0))
    viewer = harness.client("viewer", video=False, audio=False)
    publishers = [harness.client(f"p{i}", width=64, height=48) for i in range(BURST)]
    # Nobody but the viewer receives in this test: each publisher's own subscribe
    # connection is left unanswered, which keeps the machine's work on the viewer.
    for publisher in publishers:
        harness.clients.pop(publisher.participant_id)
    try:
        await viewer.join(can_publish=False, publish=False)

        async def join(index: int, publisher: MediaTestClient) -> None:
            await asyncio.sleep(index * SPACING)  # the burst's pacing, not a wait for a state
            await publisher.join()

        await asyncio.gather(*(join(i, p) for i, p in enumerate(publishers)))
        await _receives_everyone(harness, viewer, publishers, within=30)

        # One offer when the first publisher's tracks came (nothing waits on an idle
        # connection), one for the rest of the burst; a third only if the burst outlasted
        # the interval. Without coalescing, each join is its own offer.
        assert 1 <= viewer.offers <= 3, f"{viewer.offers} offers for {BURST} joins"
        assert len(harness.offers_for("viewer")) == viewer.offers
    finally:
        for publisher in publishers:
            harness.clients[publisher.participant_id] = publisher
        await harness.close()


async def test_changes_while_an_offer_waits_for_its_answer_make_one_next_offer(
    harness: RoomHarness,
) -> None:
    alice = harness.client("alice", width=64, height=48)
    await alice.join()
    # The viewer's client answers only when the test says so.
    await harness.room.add_participant("viewer", can_publish=False)
    first = await harness.wait_for_offer("viewer")
    others = [harness.client(name, width=64, height=48) for name in ("bob", "carol", "dave")]
    for other in others:
        await other.join()
    await harness.wait_until(
        lambda: all(harness.room.participant_forwarders(o.participant_id) for o in others),
        "the other publishers' tracks in the room",
    )
    assert harness.offers_for("viewer") == [first], "an offer was made before the answer"

    viewer = harness.client("viewer", video=False, audio=False)
    await viewer.on_subscriber_offer(first)
    await _receives_everyone(harness, viewer, [alice, *others], within=20)
    assert viewer.offers == 2  # the first, and one with all three joins


async def test_a_change_on_an_idle_connection_and_a_fresh_connection_wait_for_no_interval() -> None:
    # An interval far longer than any wait below: whatever needed it would time out.
    interval = 60.0
    harness = RoomHarness(loopback_config(subscriber_offer_interval=interval))
    try:
        alice = harness.client("alice", width=64, height=48)
        bob = harness.client("bob", width=64, height=48)
        viewer = harness.client("viewer", video=False, audio=False)
        await viewer.join(can_publish=False, publish=False)
        # The first change on the viewer's idle connection is offered at once.
        await alice.join()
        await _receives_everyone(harness, viewer, [alice], within=15)
        assert viewer.offers == 1

        # bob joins within the interval after that offer: his tracks wait for it ...
        await bob.join()
        await harness.wait_until(
            lambda: bool(harness.room.participant_forwarders("bob")), "bob's tracks in the room"
        )
        # ... but a track that ends is stopped at once (RTCP BYE), not at the next offer.
        started = time.monotonic()
        await harness.room.remove_participant("alice")
        await harness.wait_until(
            lambda: all(t.ended for t in viewer.tracks_from("alice")),
            "alice's tracks to end at the viewer",
            within=10,
        )
        assert time.monotonic() - started < interval / 2
        assert viewer.offers == 1

        # A fresh connection (after a failure, media_restart) is offered at once, with
        # what changed meanwhile.
        await viewer.close()
        viewer = harness.client("viewer", video=False, audio=False)
        await harness.room.resubscribe("viewer")
        await _receives_everyone(harness, viewer, [bob], within=15)
        assert viewer.offers == 1

        # The viewer leaves while its next offer (carol's tracks) waits for the interval:
        # the leave does not wait for it (before, a leave waited up to 5 s for a running
        # negotiation).
        carol = harness.client("carol", width=64, height=48)
        await carol.join()
        await harness.wait_until(
            lambda: bool(harness.room.participant_forwarders("carol")), "carol's tracks"
        )
        started = time.monotonic()
        await harness.room.remove_participant("viewer")
        assert time.monotonic() - started < 4.0
        assert viewer.offers == 1
    finally:
        await harness.close()
