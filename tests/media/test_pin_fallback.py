"""A receiver's own pin names someone whose camera goes away: that receiver's spotlight
falls back to the room's stage (high encoding) at once, whether or not its client
unpins."""

from __future__ import annotations

from media_testkit import MediaTestClient, RoomHarness

HIGH = (320, 240)
LOW = (160, 120)


def last_size(client: MediaTestClient, publisher: str) -> tuple[int, int] | None:
    tracks = [t for t in client.tracks_from(publisher, "video") if not t.ended]
    return tracks[-1].sizes[-1] if tracks and tracks[-1].sizes else None


async def test_a_pin_of_someone_who_left_shows_the_rooms_stage(harness: RoomHarness) -> None:
    room = harness.room
    a = harness.client("A", audio=False, width=HIGH[0], height=HIGH[1], low_video=LOW)
    b = harness.client("B", audio=False, width=HIGH[0], height=HIGH[1], low_video=LOW)
    c = harness.client("C", video=False, audio=False)
    room.set_spotlight({"A"})
    for client in (a, b):
        await client.join()
    await c.join(can_publish=False, publish=False)
    room.set_view("C", pinned="B", tiles_visible=True)
    await harness.wait_until(
        lambda: room.video_quality("C")[1] == {"A": "low", "B": "high"}, "C's pin: B high"
    )

    await room.remove_participant("B")
    await harness.wait_until(
        lambda: room.video_quality("C")[1] == {"A": "high"},
        "C's spotlight falls back to the room's stage",
    )
    await harness.wait_until(lambda: last_size(c, "A") == HIGH, "C gets A high again")
