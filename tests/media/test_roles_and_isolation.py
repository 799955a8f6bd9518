"""Roles in media (observers cannot publish) and isolation between rooms."""

from __future__ import annotations

import pytest
from media_testkit import LOOPBACK, MediaTestClient, RoomHarness

from server.media import MediaError
from server.media.aiortc_internals import gather_only_on


async def test_observer_offer_with_sending_media_is_refused(harness: RoomHarness) -> None:
    observer = harness.client("observer")
    await harness.room.add_participant("observer", can_publish=False)
    with gather_only_on(LOOPBACK):
        offer = await observer.make_publish_offer()
    with pytest.raises(MediaError) as info:
        await harness.room.publish("observer", offer)
    assert info.value.code == "not_allowed"
    assert harness.room.peer_connections() == []  # nothing was created

    # The observer still receives everyone else.
    host = harness.client("host")
    await host.join()
    await harness.wait_until(
        lambda: observer.frames_from("host", "video") >= 3, "the observer to receive the host"
    )
    assert all(t.participant_id == "host" for t in harness.room.tracks())


async def test_rooms_are_isolated() -> None:
    first, second = RoomHarness(room_id="a"), RoomHarness(room_id="b")
    try:
        alice = first.client("alice")
        bob = second.client("bob")
        await alice.join()
        await bob.join()
        # Same participant id in another room is another participant.
        carol_a = first.client("carol", video=False, audio=False)
        carol_b = second.client("carol", video=False, audio=False)
        await carol_a.join(publish=False)
        await carol_b.join(publish=False)
        await first.wait_until(lambda: carol_a.frames_from("alice", "video") >= 3, "carol in a")
        await second.wait_until(lambda: carol_b.frames_from("bob", "video") >= 3, "carol in b")
        assert {r.publisher_id for r in carol_a.received.values()} == {"alice"}
        assert {r.publisher_id for r in carol_b.received.values()} == {"bob"}
        assert [t.participant_id for t in first.room.tracks()] == ["alice", "alice"]
        with pytest.raises(MediaError) as info:
            await first.room.publish("bob", "v=0\r\n")
        assert info.value.code == "unknown_participant"
        with pytest.raises(MediaError):
            first.room.track_forwarder(second.room.tracks()[0].track_id)
    finally:
        await first.close()
        await second.close()


async def test_duplicate_and_invalid_participant_ids(harness: RoomHarness) -> None:
    await harness.room.add_participant("alice", can_publish=True)
    with pytest.raises(MediaError) as info:
        await harness.room.add_participant("alice", can_publish=True)
    assert info.value.code == "participant_exists"
    for bad in ("", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(MediaError) as info:
            await harness.room.add_participant(bad, can_publish=True)
        assert info.value.code == "bad_participant_id"


async def test_node_close_is_idempotent_and_rejects_new_rooms() -> None:
    harness = RoomHarness()
    client: MediaTestClient = harness.client("alice")
    await client.join()
    await harness.close()
    await harness.node.close()
    assert harness.room.closed
    with pytest.raises(MediaError) as info:
        harness.node.room("again")
    assert info.value.code == "closed"
    with pytest.raises(MediaError):
        await harness.room.add_participant("bob", can_publish=True)
