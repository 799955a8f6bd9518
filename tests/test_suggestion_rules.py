"""Micro-suggestion rules as pure functions: who sees what, agenda items, and how the record
and the minutes (Markdown and DOCX) are made from the timeline and the room's handling."""

from __future__ import annotations

import io

import pytest
from docx import Document

from server.recording.minutes import minutes_docx, minutes_markdown
from server.recording.moment_index import moments_of, searchable
from server.recording.session_record import record_suggestions, session_record
from server.rooms.errors import Conflict
from server.rooms.models import Participant, Role, Suggestion, TimelineEntry
from server.rooms.payloads import SuggestionSubmit
from server.rooms.suggestion_rules import (
    CATEGORIES,
    SUBMITTED,
    can_submit,
    check_agenda_index,
    visible,
    visible_timeline,
)
from tests.recording.test_record_rules import T0, entry, source


def _participant(identity: str, role: Role) -> Participant:
    return Participant(
        identity=identity, name=identity, role=role, venue="main", session="s", node="n",
        joined_at=0.0,
    )  # fmt: skip


def _suggestion(n: int, by: str, at: float, index: int = 0, **more: object) -> Suggestion:
    return Suggestion.model_validate(
        {
            "id": f"s{n}",
            "by": by,
            "name": f"委员{by}",
            "venue": "county",
            "agenda_index": index,
            "category": "livelihood",
            "title": f"建议{n}",
            "body": f"内容{n}",
            "submitted_at": (T0 + at) * 1000,
            **more,
        }
    )


def test_who_submits_and_who_sees_what() -> None:
    assert [r for r in Role if can_submit(r)] == [Role.HOST, Role.COHOST, Role.MEMBER]
    mine, theirs = _suggestion(1, "a", 1), _suggestion(2, "b", 2)
    member, moderator = _participant("a", Role.MEMBER), _participant("m", Role.MODERATOR)
    assert visible([mine, theirs], member) == [mine]
    assert visible([mine, theirs], moderator) == [mine, theirs]
    assert visible([mine, theirs], _participant("o", Role.OBSERVER)) == []
    timeline = [
        TimelineEntry(id="1-0", ts=1, type=SUBMITTED, data=mine.model_dump(mode="json")),
        TimelineEntry(id="1-1", ts=1, type=SUBMITTED, data=theirs.model_dump(mode="json")),
        TimelineEntry(id="1-2", ts=1, type="chat", data={"text": "x"}),
    ]
    assert [e.id for e in visible_timeline(timeline, member)] == ["1-0", "1-2"]
    assert [e.id for e in visible_timeline(timeline, moderator)] == ["1-0", "1-1", "1-2"]


def test_agenda_items_and_fixed_categories_with_labels() -> None:
    check_agenda_index(2, 3)
    check_agenda_index(0, 0)  # a session without an agenda has its one item
    for index, length in ((3, 3), (1, 0)):
        with pytest.raises(Conflict) as refused:
            check_agenda_index(index, length)
        assert refused.value.code == "agenda_out_of_range"
    assert all(zh and en for zh, en in CATEGORIES.values())
    SuggestionSubmit.model_validate({"category": "other", "title": "t", "body": "b"})
    with pytest.raises(ValueError, match="category"):
        SuggestionSubmit.model_validate({"category": "sports", "title": "t", "body": "b"})


def test_the_record_joins_the_timeline_with_what_the_room_keeps_and_its_handling() -> None:
    in_span = _suggestion(2, "b", 30, index=1)
    timeline = [
        entry(10, "agenda_advanced", index=1),
        entry(30, SUBMITTED, **in_span.model_dump(mode="json")),
    ]
    span = source(timeline, end=100.0)
    # From the timeline alone (the room is gone): received, no reply.
    (only,) = record_suggestions(span)
    assert (only.id, only.status, only.reply, only.agenda_index) == ("s2", "received", None, 1)
    assert only.entry_id == timeline[1].id and only.offset == 30.0
    # With the room's: one before the span (before the session), the handled one, and
    # none submitted after the span ended.
    before = _suggestion(1, "a", -600, before_session=True)
    handled = in_span.model_copy(
        update={"status": "answered", "reply": "已采纳", "handled_at": 1.0}
    )
    later = _suggestion(3, "a", 500)
    found = record_suggestions(span, [before, handled, later])
    assert [(s.id, s.status, s.reply, s.before_session) for s in found] == [
        ("s1", "received", None, True),
        ("s2", "answered", "已采纳", False),
    ]
    assert found[0].entry_id is None and found[0].category_label == "民生保障"


def test_the_minutes_list_suggestions_under_their_item_with_status_and_reply() -> None:
    suggestion = _suggestion(
        1, "a", 5, index=1, department="市住建局", status="answered", reply="纳入明年计划"
    )
    timeline = [entry(5, SUBMITTED, **_suggestion(1, "a", 5, index=1).model_dump(mode="json"))]
    record = session_record(source(timeline), [suggestion])
    markdown = minutes_markdown(record)
    first, second = markdown.split("### 2. 发言", 1)
    assert "建议1" not in first
    section = second.split("#### 建议", 1)[1].split("####", 1)[0]
    for shown in (
        "民生保障",
        "建议1：内容1",
        "委员a",
        "承办部门：市住建局",
        "已答复",
        "纳入明年计划",
    ):
        assert shown in section, shown
    document = Document(io.BytesIO(minutes_docx(record)))
    texts = [p.text for p in document.paragraphs]
    assert any("建议1：内容1" in t and "纳入明年计划" in t for t in texts)
    # Search inside sessions finds it by its text, at its moment, under its item.
    (moment,) = [m for m in moments_of(record) if m.kind == "suggestion"]
    assert (moment.offset, moment.agenda_index, moment.name) == (5.0, 1, "委员a")
    assert "内容1" in searchable(moment) and "住建" in searchable(moment)
