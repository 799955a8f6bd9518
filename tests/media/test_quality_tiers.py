"""The per-receiver link level and slot choice (pure: times are passed in)."""

from __future__ import annotations

import itertools

import pytest

from server.media.quality_tiers import (
    AUDIO_ONLY,
    FULL,
    MAX_SAMPLES,
    REDUCED,
    UPLINK_CAPS,
    PublisherUplink,
    ReceiverQuality,
    TierThresholds,
    slot_encoding,
)

T = TierThresholds(window=2.0, down_loss=0.08, up_loss=0.02, hold=2.0, up_after=6.0)


def feed(q: ReceiverQuality, start: float, end: float, loss: float, jitter: float = 0.005) -> list:
    """One report every 0.5 s from ``start`` to ``end``; the levels it changed to."""
    changes = []
    t = start
    while t <= end:
        level = q.observe_report(t, loss, jitter)
        if level is not None:
            changes.append((t, level))
        t += 0.5
    return changes


def test_a_lossy_link_steps_down_one_level_at_a_time_then_audio_only() -> None:
    q = ReceiverQuality(T, now=0.0)
    changes = feed(q, 0.0, 10.0, loss=0.2)
    assert [level for _, level in changes] == [REDUCED, AUDIO_ONLY]
    # The second step waits for the hold: the first one must be given time to help.
    assert changes[1][0] - changes[0][0] >= T.hold
    assert q.level == AUDIO_ONLY


def test_a_step_waiting_for_its_keyframe_is_held_from_when_it_reached_the_receiver() -> None:
    # The step down to the low encoding waits for the publisher's keyframe: meanwhile the
    # receiver still gets the high encoding, and its reports say nothing of the low one.
    q = ReceiverQuality(T, now=0.0)
    (down_at, level), *_ = feed(q, 0.0, 2.0, loss=0.2)
    assert level == REDUCED
    q.step_pending()
    keyframe_at = down_at + 3.0  # later than the hold
    assert feed(q, down_at + 0.5, keyframe_at, loss=0.2) == []
    q.step_took_effect(keyframe_at)
    # The receiver has the low encoding for a hold before the link steps it down again.
    changes = feed(q, keyframe_at + 0.5, keyframe_at + 10.0, loss=0.2)
    assert [level for _, level in changes] == [AUDIO_ONLY]
    assert changes[0][0] - keyframe_at >= T.hold


def test_a_step_whose_keyframe_never_comes_is_held_for_at_most_two_holds() -> None:
    q = ReceiverQuality(T, now=0.0)
    (down_at, _), *_ = feed(q, 0.0, 2.0, loss=0.2)
    q.step_pending()
    changes = feed(q, down_at + 0.5, down_at + 10.0, loss=0.2)
    assert [level for _, level in changes] == [AUDIO_ONLY]
    assert 2 * T.hold <= changes[0][0] - down_at <= 2 * T.hold + 0.5
    q.step_took_effect(down_at + 10.0)  # a late keyframe of a step long gone: no effect
    assert q.level == AUDIO_ONLY


def test_a_recovered_link_steps_back_up_after_clean_time_not_at_once() -> None:
    q = ReceiverQuality(T, now=0.0)
    feed(q, 0.0, 10.0, loss=0.2)
    changes = feed(q, 10.5, 40.0, loss=0.0)
    assert [level for _, level in changes] == [REDUCED, FULL]
    assert changes[0][0] - 10.5 >= T.up_after  # hysteresis: not on the first clean report
    assert changes[1][0] - changes[0][0] >= T.up_after


def test_light_loss_and_middling_loss_change_nothing() -> None:
    q = ReceiverQuality(T, now=0.0)
    assert feed(q, 0.0, 30.0, loss=0.01) == []
    assert feed(q, 30.5, 60.0, loss=0.05) == []  # between up_loss and down_loss: hold
    assert q.level == FULL


def test_one_bad_report_in_a_clean_window_does_not_step_down() -> None:
    q = ReceiverQuality(T, now=0.0)
    feed(q, 0.0, 5.0, loss=0.0)
    assert q.observe_report(5.5, 0.2, 0.0) is None  # mean over the window stays low
    assert q.level == FULL


def test_high_jitter_with_some_loss_steps_down_and_alone_holds() -> None:
    q = ReceiverQuality(T, now=0.0)
    # Jitter alone (a busy publisher's timing shows in it too) changes nothing...
    assert feed(q, 0.0, 10.0, loss=0.0, jitter=0.3) == []
    # ...with some loss besides, the link is full.
    changes = feed(q, 10.5, 12.0, loss=0.04, jitter=0.3)
    assert [level for _, level in changes] == [REDUCED]
    assert q.reason.startswith("jitter")
    # And it does not climb back while the jitter stays high.
    assert feed(q, 12.5, 40.0, loss=0.0, jitter=0.3) == []


def test_each_high_jitter_report_holds_the_level_until_it_leaves_the_window() -> None:
    """The window's largest jitter is that of the reports still in it: once a spike has
    left, a smaller high report after it still counts until it leaves in its turn."""
    q = ReceiverQuality(T, now=0.0)
    assert feed(q, 0.0, 2.0, loss=0.2) == [(2.0, REDUCED)]
    assert feed(q, 2.5, 5.0, loss=0.0) == []
    assert q.observe_report(5.5, 0.0, 0.3) is None  # a spike...
    assert q.observe_report(6.0, 0.0, 0.005) is None
    assert q.observe_report(6.5, 0.0, 0.1) is None  # ...then a smaller one, still not clean
    # The spike leaves the window at 7.5, the smaller report at 8.5: clean from 9.0,
    # up one level after up_after (6 s) of it.
    assert feed(q, 7.0, 20.0, loss=0.0) == [(15.0, FULL)]


def test_a_flood_of_reports_is_judged_on_the_latest() -> None:
    """However many reports a receiver sends, the window keeps its latest MAX_SAMPLES
    (the old ones count no more, in the loss and in the jitter)."""
    q = ReceiverQuality(T, now=0.0)
    for i in range(MAX_SAMPLES):
        assert q.observe_report(3.0 + i / 1e6, 0.5, 0.3) in (None, REDUCED)
    assert q.level == REDUCED
    for i in range(MAX_SAMPLES):  # within the same window: only the latest count
        q.observe_report(3.001 + i / 1e6, 0.0, 0.0)
    assert feed(q, 3.5, 11.0, loss=0.0) == [(9.5, FULL)]


def test_a_remb_short_of_what_we_send_for_a_while_steps_down() -> None:
    t = TierThresholds(remb_share=0.3, remb_hold=6.0)
    q = ReceiverQuality(t, now=0.0)
    feed(q, 0.0, 1.5, loss=0.0)
    # A quiet picture: the estimate is low, but so is what we send. Nothing to do.
    assert q.observe_remb(2.0, 100_000, sending=90_000) is None
    # A browser's estimate starts low and ramps up: short for a moment is no verdict.
    assert q.observe_remb(2.5, 200_000, sending=1_000_000) is None
    assert q.observe_remb(4.0, 500_000, sending=1_000_000) is None
    for second in range(5, 12):
        assert q.observe_remb(float(second), 200_000, sending=1_000_000) is None
    # Short for long, but no loss: the estimate lags (after a step up); hold, do not climb.
    assert feed(q, 12.0, 30.0, loss=0.0) == []
    # Short for long, with some loss: the link is full.
    q.observe_remb(30.5, 200_000, sending=1_000_000)
    assert [level for _, level in feed(q, 31.0, 33.0, loss=0.04)] == [REDUCED]
    assert q.reason == "remb"


def test_a_failed_step_up_doubles_the_wait() -> None:
    q = ReceiverQuality(T, now=0.0)
    feed(q, 0.0, 2.5, loss=0.2)
    assert q.level == REDUCED
    up_at = 3.0
    while q.observe_report(up_at, 0.0, 0.0) is None:
        up_at += 0.5
        assert up_at < 20
    assert q.level == FULL
    # The link breaks again right after the step up: back down, and wait longer next time.
    feed(q, up_at + 0.5, up_at + 3.0, loss=0.2)
    assert q.level == REDUCED
    assert q.up_after == 2 * T.up_after


def test_a_quiet_link_below_full_steps_up_as_a_probe_and_a_failed_probe_waits_longer() -> None:
    # At audio only in a room where no microphone sends, nothing flows to the receiver:
    # no report says its link is clean (or weak). It steps up after up_after of quiet.
    q = ReceiverQuality(T, now=0.0)
    feed(q, 0.0, 5.0, loss=0.2)
    assert q.level == AUDIO_ONLY
    last = 5.0  # the last report; the step to audio only came before it
    assert q.observe_quiet(last + T.up_after - 0.1) is None, "not quiet for up_after yet"
    assert q.observe_quiet(last + T.up_after) == REDUCED
    assert q.steps_up == 1
    # The probe's video shows the link is still weak: back down, and a longer wait.
    probe = last + T.up_after
    feed(q, probe + 0.5, probe + 2.5, loss=0.2)
    assert q.level == AUDIO_ONLY and q.up_after == 2 * T.up_after
    last = probe + 2.5
    assert q.observe_quiet(last + T.up_after) is None
    assert q.observe_quiet(last + 2 * T.up_after) == REDUCED


def test_a_link_with_reports_to_judge_is_not_probed() -> None:
    # Reports keep coming (the microphones of a room at audio only, a little lossy):
    # they judge the link, and quiet never counts.
    q = ReceiverQuality(T, now=0.0)
    feed(q, 0.0, 5.0, loss=0.2)
    assert q.level == AUDIO_ONLY
    t = 5.0
    while t < 40.0:
        t += 0.5
        assert q.observe_report(t, 0.05, 0.005) is None  # neither weak nor clean
        assert q.observe_quiet(t) is None
    assert q.level == AUDIO_ONLY
    assert ReceiverQuality(T, now=0.0).observe_quiet(100.0) is None, "full: nothing to probe"


@pytest.mark.parametrize(
    ("level", "spotlight", "tiles", "has_low", "expected"),
    [
        (FULL, True, True, True, "high"),
        (FULL, False, True, True, "low"),
        (FULL, False, False, True, "off"),  # hidden tile area: no tile video
        (FULL, True, False, True, "high"),  # the spotlight is not a tile
        (REDUCED, True, True, True, "low"),
        (REDUCED, False, True, True, "low"),
        (AUDIO_ONLY, True, True, True, "off"),
        (AUDIO_ONLY, False, True, False, "off"),
        # A publisher with one encoding: everyone gets that one.
        (FULL, False, True, False, "high"),
        (REDUCED, True, True, False, "high"),
    ],
)
def test_slot_encoding(
    level: int, spotlight: bool, tiles: bool, has_low: bool, expected: str
) -> None:
    assert (
        slot_encoding(level=level, spotlight=spotlight, tiles_visible=tiles, has_low=has_low)
        == expected
    )


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="up_loss"):
        TierThresholds(up_loss=0.2, down_loss=0.1)
    with pytest.raises(ValueError, match="max_up_after"):
        TierThresholds(up_after=10, max_up_after=5)


def test_a_lossy_uplink_lowers_the_publishers_cap_and_a_clean_one_lifts_it() -> None:
    uplink = PublisherUplink(down_loss=0.05, up_loss=0.01, clean_after=10.0)
    expected = received = 0
    changes = []
    for second in range(0, 60, 2):
        lossy = second < 10
        expected += 100
        received += 80 if lossy else 100
        if uplink.observe(float(second), expected, received):
            changes.append((second, uplink.cap))
    caps = [cap for _, cap in changes]
    # Down one step per lossy interval to the floor, then back up one step per clean 10 s.
    assert caps[:4] == list(UPLINK_CAPS[1:5])
    assert caps[4:] == [UPLINK_CAPS[3], UPLINK_CAPS[2], UPLINK_CAPS[1], None][: len(caps) - 4]
    ups = [s for s, _ in changes[4:]]
    assert all(b - a >= 10 for a, b in itertools.pairwise(ups))


def test_an_uplink_with_few_packets_is_not_judged() -> None:
    uplink = PublisherUplink()
    assert not uplink.observe(0.0, 0, 0)
    assert not uplink.observe(2.0, 10, 0)  # ten packets: no verdict
    assert uplink.cap is None
