"""The parts of the metrics that need no server: bounded labels and retained totals."""

from __future__ import annotations

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from server.metrics.labels import BoundedLabels, event_label
from server.metrics.retained import RetainedTotals
from server.metrics.server_metrics import ServerMetrics
from server.rooms import acks

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


def test_event_labels_come_from_the_command_table_only() -> None:
    assert event_label("join") == "join"
    assert event_label("raise_hand") == "raise_hand"
    assert event_label("x" * 10_000) == "unknown"
    assert event_label(None) == "unknown"


def test_open_label_sets_are_capped() -> None:
    codes = BoundedLabels(limit=3)
    assert [codes(c) for c in ("a", "b", "c", "d", "a")] == ["a", "b", "c", "other", "a"]
    assert codes("Not An Identifier") == "other"
    assert codes(42) == "other"


def test_a_client_cannot_create_series() -> None:
    metrics = ServerMetrics("node-1")
    for i in range(500):
        metrics.event_done(f"made_up_{i}", acks.error(f"code_{i}", "x"), 0.01)
    events = next(
        s for s in metrics.registry.collect() if s.name == "yitang_socketio_events"
    ).samples
    names = {s.labels["event"] for s in events}
    outcomes = {s.labels["outcome"] for s in events}
    assert "made_up_0" not in names and names >= {"unknown"}
    assert len(outcomes) <= 64 + 2  # capped codes, `other`, `ok`


def test_retained_totals_never_go_down() -> None:
    totals = RetainedTotals()
    assert totals.update({("sent", 1): 10.0, ("sent", 2): 5.0}) == {"sent": 15.0}
    assert totals.update({("sent", 1): 12.0}) == {"sent": 17.0}  # 2 left with 5
    assert totals.update({("sent", 1): 3.0}) == {"sent": 20.0}  # a new object under id 1
    assert totals.update({}) == {"sent": 20.0}


def test_retained_totals_by_group_keep_a_group_whose_objects_are_all_gone() -> None:
    totals = RetainedTotals()
    assert totals.update_group("sent:video", {1: 10.0, 2: 5.0}) == 15.0
    assert totals.update_group("sent:audio", {3: 7.0}) == 7.0
    assert totals.groups() == {"sent:video", "sent:audio"}
    assert totals.update_group("sent:video", {}) == 15.0  # every video sender left
    assert totals.update_group("sent:video", {4: 1.0}) == 16.0
    # The mixed form agrees with the groups it was given.
    assert totals.update({("sent:audio", 3): 8.0}) == {"sent:video": 16.0, "sent:audio": 8.0}
