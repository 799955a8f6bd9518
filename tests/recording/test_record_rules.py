"""The rules of attendance and the speaking record, as pure functions of a timeline.

The end-to-end tests (test_session_record.py) drive real clients; these pin the
cases a short session does not reach: a connection replaced without a leave, the
floor holder leaving, the floor held when recording started, the session ended,
an extension after the window, formulas in names, Markdown in chat.
"""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from server.recording.attendance import Attendance, AttendanceEntry, attendance, attendance_csv
from server.recording.minutes import minutes_markdown
from server.recording.models import ParticipantEntry, RoomInfo
from server.recording.session_record import session_record
from server.recording.session_source import SessionSource
from server.recording.speaking import EXTENSION_WINDOW, speaking_record
from server.rooms.models import AgendaItem, Level, TimelineEntry, Venue

T0 = 1_800_000_000.0
ROOM = RoomInfo(
    id="r",
    title="协商会",
    scheduled_start="2026-12-01T09:00:00+08:00",
    venues=[
        Venue(id="main", name="主会场", level=Level.PROVINCIAL, main=True),
        Venue(id="county", name="区会场", level=Level.COUNTY),
    ],
    agenda=[AgendaItem(title="开场", planned_speakers=["a"]), AgendaItem(title="发言")],
)


def person(identity: str, name: str, venue: str = "county") -> ParticipantEntry:
    level = Level.PROVINCIAL if venue == "main" else Level.COUNTY
    return ParticipantEntry(
        identity=identity, name=name, role="member", venue=venue, venue_name=venue, level=level
    )


def entry(at: float, kind: str, n: int = 0, **data: object) -> TimelineEntry:
    ms = int((T0 + at) * 1000)
    return TimelineEntry(id=f"{ms}-{n}", ts=ms, type=kind, data=dict(data))


def source(timeline: list[TimelineEntry], end: float = 100.0, **kwargs: object) -> SessionSource:
    defaults: dict[str, object] = {
        "room": ROOM,
        "roster": [person("a", "甲"), person("b", "乙")],
        "timeline": timeline,
        "started_at": T0,
        "ended_at": T0 + end,
    }
    return SessionSource(**{**defaults, **kwargs})  # type: ignore[arg-type]


def rows(record: Attendance) -> dict[str, AttendanceEntry]:
    return {
        p.identity: p
        for level in record.levels
        for venue in level.venues
        for p in venue.participants
    }


def test_a_replaced_connection_is_a_reconnection_without_a_gap() -> None:
    found = rows(
        attendance(
            source(
                [
                    entry(10, "joined", identity="a"),
                    entry(20, "joined", identity="a"),  # new connection, old one replaced
                    entry(30, "left", identity="a"),
                    entry(40, "joined", identity="a"),
                ]
            )
        )
    )
    a = found["a"]
    assert (a.reconnections, a.present_seconds, a.first_join) == (2, 80.0, T0 + 10)
    assert a.present_at_end and a.last_leave is None
    assert found["b"].absent


def test_present_at_start_and_session_end_bound_presence() -> None:
    record = attendance(
        source(
            [entry(50, "session_ended"), entry(51, "left", identity="a")], present_at_start=["a"]
        )
    )
    a = rows(record)["a"]
    assert (a.first_join, a.last_leave, a.present_seconds) == (T0, T0 + 50, 50.0)
    assert not a.present_at_end


def test_someone_not_on_the_roster_is_listed_as_uninvited() -> None:
    record = attendance(
        source([entry(5, "joined", identity="x", name="丙", venue="main", role="guest")])
    )
    x = rows(record)["x"]
    assert (x.invited, x.absent, x.role) == (False, False, "guest")
    assert (record.invited, record.attended) == (2, 1)


def test_how_speeches_end() -> None:
    record = speaking_record(
        source(
            [
                entry(10, "floor_granted", identity="a", name="甲"),
                entry(20, "floor_granted", identity="b", name="乙"),  # replaces a
                entry(25, "floor_revoked", identity="b", by="b"),  # b yields
                entry(30, "floor_granted", identity="a"),
                entry(35, "left", identity="a"),  # holder leaves
                entry(40, "agenda_advanced", index=1, title="发言"),
                entry(45, "floor_granted", identity="b"),
                entry(50, "session_ended"),
            ],
            initial_floor="b",
        )
    )
    assert [(s.identity, s.start - T0, s.end - T0, s.ended_by) for s in record.speeches] == [
        ("b", 0.0, 10.0, "replaced"),
        ("a", 10.0, 20.0, "replaced"),
        ("b", 20.0, 25.0, "yielded"),
        ("a", 30.0, 35.0, "left"),
        ("b", 45.0, 50.0, "session_ended"),
    ]
    assert record.speeches[0].entry_id is None  # held the floor when the span started
    assert [(s.identity, s.agenda_index) for s in record.speeches][-1] == ("b", 1)
    assert [p.identity for p in record.items[0].not_spoken] == []
    assert (record.items[0].seconds, record.items[1].seconds) == (40.0, 60.0)


def test_an_extension_continues_the_speech_only_soon_after_expiry() -> None:
    late = 50 + EXTENSION_WINDOW + 1
    record = speaking_record(
        source(
            [
                entry(10, "floor_granted", identity="a", time_limit_seconds=20),
                entry(30, "floor_expired", identity="a"),
                entry(40, "floor_granted", identity="a", time_limit_seconds=10),
                entry(50, "floor_expired", identity="a"),
                entry(late, "floor_granted", identity="a"),
                entry(late + 5, "floor_revoked", identity="a", by="host"),
            ],
            end=late + 10,
        )
    )
    first, second = record.speeches
    assert (first.grants, first.duration, first.overrun_seconds) == (2, 30.0, 10.0)
    assert (first.end - T0, first.ended_by) == (50.0, "expired")
    assert (second.grants, second.time_limit_seconds, second.ended_by) == (1, None, "revoked")
    assert record.speakers[0].overrun_seconds == 10.0


def test_csv_neutralises_formulas_and_markdown_escapes_table_cells() -> None:
    src = source(
        [
            entry(1, "joined", identity="a"),
            entry(2, "chat", identity="a", name="=HYPERLINK(1)", text="a | b\n# c"),
        ],
        roster=[person("a", "=HYPERLINK(1)")],
    )
    table = list(csv.DictReader(io.StringIO(attendance_csv(attendance(src)).lstrip("\ufeff"))))
    assert table[0]["name"] == "'=HYPERLINK(1)"
    markdown = minutes_markdown(session_record(src))
    assert "| =HYPERLINK(1) | a \\| b \\# c |" in markdown


def test_a_late_expiry_timer_is_no_overrun() -> None:
    record = speaking_record(
        source(
            [
                entry(10, "floor_granted", identity="a", time_limit_seconds=20),
                entry(30.2, "floor_expired", identity="a"),
            ]
        )
    )
    [speech] = record.speeches
    assert (speech.duration, speech.overrun_seconds, speech.ended_by) == (20.2, 0.0, "expired")


EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=100, allow_nan=False),
        st.sampled_from(
            ["joined", "left", "floor_granted", "floor_revoked", "floor_expired", "agenda_advanced"]
        ),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([None, 5, 30]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True))
def test_any_timeline_gives_a_consistent_record(
    events: list[tuple[float, str, str, int | None]], present: list[str]
) -> None:
    timeline = []
    for n, (at, kind, identity, limit) in enumerate(sorted(events, key=lambda e: e[0])):
        data: dict[str, object] = {"identity": identity}
        if kind == "floor_granted":
            data["time_limit_seconds"] = limit
        if kind == "agenda_advanced":
            data = {"index": n % 2, "title": "x"}
        timeline.append(entry(at, kind, n, **data))
    src = source(timeline, present_at_start=present)
    span = src.ended_at - src.started_at
    record = attendance(src)
    for row in rows(record).values():
        assert 0 <= row.present_seconds <= span + 1e-6
        assert row.absent == (row.first_join is None)
        if row.last_leave is not None and row.first_join is not None:
            assert row.first_join <= row.last_leave
    assert record.invited + sum(not r.invited for r in rows(record).values()) == len(rows(record))
    speaking = speaking_record(src)
    previous_end = src.started_at
    for speech in speaking.speeches:
        assert speech.start >= previous_end - 1e-6  # one speaker at a time
        assert 0 <= speech.duration <= speech.end - speech.start + 1e-6
        assert speech.overrun_seconds >= 0
        previous_end = speech.end
    assert sum(s.duration for s in speaking.speeches) <= span + 1e-6


def test_an_agenda_item_over_its_planned_time_shows_in_the_minutes() -> None:
    room = ROOM.model_copy(
        update={"agenda": [AgendaItem(title="开场", duration_minutes=1), AgendaItem(title="发言")]}
    )
    src = source([entry(90, "agenda_advanced", index=1, title="发言")], room=room)
    item = speaking_record(src).items[0]
    assert (item.seconds, item.planned_minutes, item.overrun_seconds) == (90.0, 1, 30.0)
    assert "（计划 1 分钟，超时 30秒）" in minutes_markdown(session_record(src))


def test_a_member_of_the_public_on_stage_is_in_the_speaking_record_and_the_minutes() -> None:
    guest = {"identity": "o1", "name": "市民丙", "venue": "county", "role": "guest"}
    src = source(
        [
            entry(1, "joined", **{**guest, "role": "observer"}),
            entry(5, "stage_started", **guest, by="a"),
            entry(5, "floor_granted", 1, **guest, by="a", time_limit_seconds=None),
            entry(35, "floor_revoked", identity="o1", by="a"),
            entry(35, "stage_ended", 1, **guest, by="a", reason="ended", seconds=30),
            entry(40, "floor_granted", identity="b", name="乙", venue="county", by="a"),
        ]
    )
    speeches = speaking_record(src).items[0].speeches
    connected = next(s for s in speeches if s.identity == "o1")
    assert connected.on_stage and connected.duration == 30.0
    assert connected.ended_by == "revoked" and connected.name == "市民丙"
    assert not next(s for s in speeches if s.identity == "b").on_stage
    assert "市民丙（连线）" in minutes_markdown(session_record(src))
