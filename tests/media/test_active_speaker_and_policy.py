"""Active speaker from audio levels, and the last-N / pinned video policy."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from media_testkit import MediaTestClient, RoomHarness, loopback_config, require_compiled

from server.media import ActiveSpeaker, ActiveSpeakerConfig
from server.media.active_speaker import SILENCE_DBOV, ActiveSpeakerDetector, AudioLevelMeter
from server.media.aiortc_internals import COMPILED_INGEST_ERROR


def _detector() -> tuple[ActiveSpeakerDetector, list[str | None]]:
    changes: list[str | None] = []
    return ActiveSpeakerDetector(ActiveSpeakerConfig(), changes.append), changes


def _feed(
    detector: ActiveSpeakerDetector, levels: dict[str, int], start: float, end: float
) -> None:
    # 50 packets/s per participant, a detector tick every 100 ms.
    t = start
    step = 0.02
    ticks = 0
    while t < end:
        for pid, level in levels.items():
            detector.observe(pid, level, t)
        ticks += 1
        if ticks % 5 == 0:
            detector.tick(t)
        t += step


def test_loudest_sustained_speaker_wins_with_hysteresis() -> None:
    detector, changes = _detector()
    _feed(detector, {"a": 20, "b": 127}, 0.0, 1.0)  # a speaks at -20 dBov, b silent
    assert changes == ["a"]
    # b is only slightly louder than a: below the 6 dB margin, no switch.
    _feed(detector, {"a": 20, "b": 17}, 1.0, 3.0)
    assert changes == ["a"]
    # A short burst from b (shorter than hold + smoothing) does not switch either.
    _feed(detector, {"a": 20, "b": 0}, 3.0, 3.2)
    _feed(detector, {"a": 20, "b": 127}, 3.2, 4.0)
    assert changes == ["a"]
    # b clearly louder and sustained: switch.
    _feed(detector, {"a": 30, "b": 5}, 4.0, 6.0)
    assert changes == ["a", "b"]
    # Silence keeps the last speaker.
    _feed(detector, {"a": 127, "b": 127}, 6.0, 8.0)
    assert changes == ["a", "b"]
    assert detector.recent == ["b", "a"]
    # When a goes quiet-but-b-stopped case: a speaks alone again -> a after hold.
    _feed(detector, {"a": 25}, 8.0, 10.0)
    assert changes[-1] == "a"
    detector.remove("a")
    assert changes[-1] is None
    assert "a" not in detector.levels()


def test_quiet_room_has_no_speaker() -> None:
    detector, changes = _detector()
    _feed(detector, {"a": 90, "b": 127}, 0.0, 3.0)  # -90 dBov: background noise
    assert changes == []
    assert detector.active is None


async def test_active_speaker_event_from_real_audio_levels() -> None:
    harness = RoomHarness(loopback_config(audio_levels_interval=0.2))
    try:
        loud = harness.client("loud", video=False, amplitude=0.5)
        quiet = harness.client("quiet", video=False, amplitude=0.0)
        await loud.join()
        await quiet.join()
        await harness.wait_until(
            lambda: ActiveSpeaker("loud") in harness.events, "loud to become active speaker"
        )
        assert harness.room.active_speaker == "loud"
        levels = harness.room.audio_levels()
        assert levels["loud"] > -30 > levels["quiet"]
        # Swap: the other one talks, the first stops.
        assert loud.audio is not None
        assert quiet.audio is not None
        loud.audio.amplitude = 0.0
        quiet.audio.amplitude = 0.5
        await harness.wait_until(
            lambda: ActiveSpeaker("quiet") in harness.events, "the speaker to switch"
        )
    finally:
        await harness.close()


async def test_a_newcomer_is_told_who_is_speaking() -> None:
    # The speaker is announced when it changes; someone joining later, while the same person
    # goes on speaking, must still learn who it is.
    harness = RoomHarness(loopback_config())
    try:
        loud = harness.client("loud", video=False, amplitude=0.5)
        await loud.join()
        await harness.wait_until(
            lambda: ActiveSpeaker("loud") in harness.events, "loud to become active speaker"
        )
        announced = harness.events.count(ActiveSpeaker("loud"))
        late = harness.client("late", video=False, audio=False)
        await late.join(publish=False)
        await harness.wait_until(
            lambda: harness.events.count(ActiveSpeaker("loud")) > announced,
            "the speaker announced again for the newcomer",
        )
        assert harness.room.active_speaker == "loud"
    finally:
        await harness.close()


async def _three_publishers_and_a_viewer(
    harness: RoomHarness,
) -> tuple[list[MediaTestClient], MediaTestClient]:
    """a, b and c publish (in that join order), then "viewer" joins to receive only."""
    clients = [harness.client(n, width=64, height=48) for n in ("a", "b", "c")]
    for client in clients:
        await client.join()
    viewer = harness.client("viewer", video=False, audio=False)
    await viewer.join(publish=False)
    return clients, viewer


async def test_last_n_pauses_video_without_renegotiation() -> None:
    harness = RoomHarness(loopback_config(last_n=1))
    try:
        clients, viewer = await _three_publishers_and_a_viewer(harness)
        await harness.wait_until(
            lambda: all(viewer.frames_from(c.participant_id, "audio") >= 5 for c in clients),
            "everyone's audio at the viewer",
        )
        # Nobody has spoken: the first publisher (join order) is the forwarded one.
        await harness.wait_until(lambda: viewer.frames_from("a", "video") >= 3, "a's video")
        b_frames = viewer.frames_from("b", "video")
        c_frames = viewer.frames_from("c", "video")
        offers = viewer.offers

        # Pinning c forwards c as well, without a new offer.
        harness.room.set_pinned({"c"})
        await harness.wait_until(lambda: viewer.frames_from("c", "video") >= c_frames + 3, "c")
        assert viewer.frames_from("b", "video") == b_frames
        assert viewer.offers == offers

        # Unlimited again: b resumes (at a keyframe it asked for).
        plis = harness.room.stats().plis_sent
        harness.room.last_n = None
        await harness.wait_until(lambda: viewer.frames_from("b", "video") >= b_frames + 3, "b")
        assert viewer.offers == offers
        assert harness.room.stats().plis_sent > plis
    finally:
        await harness.close()


async def test_a_speaker_change_within_the_last_n_touches_no_receiver() -> None:
    """A new active speaker already among the last N moves the ranking, not the set of
    paused videos: no receiver's slots are re-applied (1-4 ms with the event loop held
    at 84 participants, at every speaker change). One from outside the last N is
    forwarded, and the one it displaces paused, at once."""
    harness = RoomHarness(loopback_config(last_n=2))
    try:
        _, viewer = await _three_publishers_and_a_viewer(harness)
        # Nobody has spoken: the first two publishers (join order) are forwarded.
        await harness.wait_until(
            lambda: viewer.frames_from("a", "video") >= 3 and viewer.frames_from("b", "video") >= 3,
            "a's and b's video at the viewer",
        )
        room = harness.room
        applied: list[frozenset[str]] = []
        for pid in ("a", "b", "c", "viewer"):
            subscribe = room._participants[pid].subscribe
            original = subscribe.set_paused_publishers

            def record(paused: Iterable[str], original: Callable[..., None] = original) -> None:
                applied.append(frozenset(paused))
                original(paused)

            subscribe.set_paused_publishers = record  # type: ignore[method-assign]
        speaker = room._speaker
        speaker._set_active("b")  # ranking b, a, c: c stays paused
        speaker._set_active("a")  # a, b, c
        assert applied == []
        c_frames = viewer.frames_from("c", "video")
        speaker._set_active("c")  # c, a, b: b is paused now, c forwarded
        assert applied == [frozenset({"b"})] * 4
        await harness.wait_until(lambda: viewer.frames_from("c", "video") >= c_frames + 3, "c")
    finally:
        await harness.close()


def test_the_compiled_meter_computes_what_the_python_meter_does() -> None:
    """The compiled forwarding's AudioLevelMeter.observe (server/media/_ingest.c) gives the
    Python method's levels to the last bit, over speech, silence, bursts, repeated and
    out-of-order times and out-of-range levels."""
    require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)
    from server.media import _ingest

    rng = random.Random(6464)
    python, compiled = AudioLevelMeter(0.3, 100.0), AudioLevelMeter(0.3, 100.0)
    now = 100.0
    for _ in range(5000):
        now += rng.choice((0.0, 0.02, 0.02, 0.02, 0.1, 1.5, -0.01))  # same, steady, late, back
        level = rng.choice((rng.randint(0, 127), 127, 0, -5, 200))
        python.observe(level, now)
        _ingest.observe_level(compiled, level, now)
        assert (compiled.smoothed, compiled.last_update) == (python.smoothed, python.last_update)
    assert SILENCE_DBOV < python.smoothed <= 0.0
