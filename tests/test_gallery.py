"""The public gallery: observers post questions and opinions, which reach the room only once
a host, co-host or moderator approved them; the `moderator` role; limits; the timeline and
the minutes."""

from __future__ import annotations

import json

import pytest

from server import appkeys
from server.recording.minutes import minutes_markdown
from server.recording.session_record import live_room_source, session_record
from server.rooms import gallery
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle

SECRET = "清水塘的污染治理资金从哪里来？"


def _seen(client: RoomClient, text: str) -> bool:
    """Whether any event this client received, or its snapshot, carries `text`."""
    dumped = json.dumps(client.received, ensure_ascii=False)
    snapshot = client.snapshot.model_dump_json() if client.snapshot else ""
    return text in dumped or text in snapshot


async def test_an_observers_question_reaches_everyone_only_once_the_host_approves_it(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    other = await server.client(rid, "o2", "observer", "shifeng")
    await host.advance_agenda(1)
    item_id = await observer.gallery_post(SECRET, name="王女士", district="石峰区")
    # The host sees it in the queue, with who posted it and the agenda item.
    await host.wait_for(lambda: item_id in host.gallery_queue)
    queued = host.gallery_queue[item_id]
    assert (queued.text, queued.name, queued.district) == (SECRET, "王女士", "石峰区")
    assert (queued.by, queued.agenda_index, queued.status) == ("o1", 1, "pending")
    # Nobody else hears of its text: not the member, not the other observer, not a newcomer.
    late = await server.client(rid, "m2", "member", "national")
    await member.chat("a message after the post")
    for client in (member, other, late):
        await client.wait_for(lambda c=client: any(e.type == "chat" for e in c.timeline))
        assert not _seen(client, SECRET)
        assert client.gallery == {} and client.gallery_queue == {}
    assert observer.gallery == {}
    # An observer or a member cannot approve it, reject it, answer it or show it.
    for client in (observer, member):
        for event, payload in (
            ("gallery_approve", {"id": item_id}),
            ("gallery_reject", {"id": item_id}),
            ("gallery_answer", {"id": item_id, "text": "x"}),
            ("gallery_show", {"id": item_id}),
        ):
            with pytest.raises(SignalingError) as refused:
                await client.call(event, payload)
            assert refused.value.code == "host_only"
    assert not _seen(member, SECRET)
    # Approved: every participant has it, without the poster's identity.
    approved = await host.gallery_approve(item_id)
    assert approved.status == "approved" and approved.handled_by == "host"
    for client in (host, member, observer, other, late):
        await client.wait_for(lambda c=client: item_id in c.gallery)
        shown = client.gallery[item_id]
        assert (shown.text, shown.name, shown.agenda_index) == (SECRET, "王女士", 1)
        assert "o1" not in shown.model_dump_json()
    # A newcomer's snapshot has it too.
    newcomer = await server.client(rid, "m3", "member", "national")
    assert [i.text for i in newcomer.gallery.values()] == [SECRET]
    for client in (host, member, observer, other, late, newcomer):
        await client.close()


async def test_answer_show_and_reject(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    asked = await observer.gallery_post("何时开工？")
    opinion = await observer.gallery_post("建议增加绿地", kind="opinion")
    spam = await observer.gallery_post("广告")
    # Answering approves and publishes the answer with the question.
    await host.gallery_answer(asked, "明年春季开工")
    await member.wait_for(lambda: asked in member.gallery and bool(member.gallery[asked].answer))
    assert member.gallery[asked].answer == "明年春季开工"
    # Putting an item on screen approves it and highlights it for everyone.
    assert await host.gallery_show(opinion) == opinion
    for client in (member, observer):
        await client.wait_for(
            lambda c=client: c.gallery_on_screen is not None and c.gallery_on_screen.id == opinion
        )
        assert client.gallery[opinion].kind == "opinion"
    assert await host.gallery_show(None) is None
    await member.wait_for(lambda: member.gallery_on_screen is None)
    # A rejected item is never shown and cannot be put on screen afterwards.
    rejected = await host.gallery_reject(spam)
    assert rejected.status == "rejected"
    with pytest.raises(SignalingError) as refused:
        await host.gallery_show(spam)
    assert refused.value.code == "gallery_rejected"
    with pytest.raises(SignalingError) as refused:
        await host.gallery_approve("g999")
    assert refused.value.code == "gallery_item_not_found"
    assert spam not in member.gallery and not _seen(member, "广告")
    # All of it in the timeline; the submission without its text.
    types = [e.type for e in host.timeline if e.type.startswith("gallery_")]
    for kind in ("gallery_answered", "gallery_approved", "gallery_shown", "gallery_hidden"):
        assert kind in types
    assert "gallery_rejected" in types
    record = await live_room_source(server.app[appkeys.STORE], rid)
    submitted = [e for e in record.timeline if e.type == "gallery_submitted"]
    assert len(submitted) == 3
    assert all(set(e.data) == {"id", "kind", "agenda_index"} for e in submitted)
    for client in (host, member, observer):
        await client.close()


async def test_oversized_and_too_frequent_posts_are_refused(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    for payload in (
        {"text": "问" * 501},
        {"text": "   "},
        {"text": "ok", "name": "名" * 65},
        {"text": "ok", "district": "\u202e区"},
        {"text": "ok", "kind": "order"},
    ):
        with pytest.raises(SignalingError) as refused:
            await observer.call("gallery_post", payload)
        assert refused.value.code == "invalid_payload"
    # A few in a row, then a clear refusal: try again in a minute.
    for n in range(3):
        await observer.gallery_post(f"问题 {n}")
    with pytest.raises(SignalingError) as refused:
        await observer.gallery_post("one too many")
    assert refused.value.code == "gallery_rate_limited"
    assert "minute" in refused.value.message
    # The limit is per identity: another observer may still post, and a reconnect of
    # the first does not reset it.
    await observer.close()
    again = await server.client(rid, "o1", "observer", "shifeng")
    with pytest.raises(SignalingError) as refused:
        await again.gallery_post("after a reconnect")
    assert refused.value.code == "gallery_rate_limited"
    other = await server.client(rid, "o2", "observer", "shifeng")
    await other.gallery_post("a fresh voice")
    await host.wait_for(lambda: len(host.gallery_queue) == 4)
    for client in (host, again, other):
        await client.close()


async def test_the_queue_is_bounded_dropping_handled_items_first(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    owned = server.owned_room(rid)
    assert owned is not None
    # Fill the queue to its bound (the owner's state directly: posting 500 would take
    # 500 identities' worth of rate limit).
    first = await (await server.client(rid, "o1", "observer", "shifeng")).gallery_post("first")
    await host.gallery_reject(first)
    template = owned.state.gallery[first]
    for n in range(2, gallery.MAX_GALLERY_ITEMS + 1):
        item = template.model_copy(update={"id": f"g{n}", "status": "pending"})
        owned.state.gallery[item.id] = item
    owned.state.gallery_next = gallery.MAX_GALLERY_ITEMS + 1
    poster = await server.client(rid, "o2", "observer", "shifeng")
    newest = await poster.gallery_post("newest")
    assert first not in owned.state.gallery and newest in owned.state.gallery
    assert len(owned.state.gallery) == gallery.MAX_GALLERY_ITEMS
    # All waiting: a new post is refused rather than dropping one nobody looked at.
    with pytest.raises(SignalingError) as refused:
        await poster.gallery_post("one more")
    assert refused.value.code == "gallery_full"
    await host.close()
    await poster.close()


async def test_a_moderator_runs_the_queues_but_cannot_end_or_admit(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    moderator = await server.client(rid, "mod", "moderator", "zhuzhou")
    member = await server.client(rid, "m1", "member", "shifeng")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    assert moderator.you.role == "moderator"
    item_id = await observer.gallery_post("moderated by the moderator")
    await moderator.wait_for(lambda: item_id in moderator.gallery_queue)
    await moderator.gallery_approve(item_id)
    await member.wait_for(lambda: item_id in member.gallery)
    # The speaking queue as well.
    await member.raise_hand()
    live = await moderator.next_speaker(time_limit_seconds=60)
    assert live.floor is not None and live.floor.identity == "m1"
    await moderator.extend_floor(30)
    await moderator.revoke_floor()
    # But not the session's other controls.
    for event, payload in (
        ("end_session", {}),
        ("set_lock", {"locked": True}),
        ("admit", {"identities": ["x"]}),
        ("remove_participant", {"identity": "m1"}),
        ("mute_all", {}),
        ("start_recording", {}),
    ):
        with pytest.raises(SignalingError) as refused:
            await moderator.call(event, payload)
        assert refused.value.code == "host_only", event
    # The moderator's joins are in the timeline with the role.
    joined = next(
        e for e in host.timeline if e.type == "joined" and e.data.get("identity") == "mod"
    )
    assert joined.data["role"] == "moderator"
    for client in (host, moderator, member, observer):
        await client.close()


async def test_the_minutes_list_an_approved_question_under_its_agenda_item(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    await host.advance_agenda(2)
    approved = await observer.gallery_post("项目何时完工？", name="李先生", district="荷塘区")
    rejected = await observer.gallery_post("不该出现在纪要里")
    await host.gallery_answer(approved, "预计2027年")
    await host.gallery_reject(rejected)
    source = await live_room_source(server.app[appkeys.STORE], rid)
    record = session_record(source)
    assert [(q.text, q.agenda_index, q.answer) for q in record.questions] == [
        ("项目何时完工？", 2, "预计2027年")
    ]
    markdown = minutes_markdown(record)
    item = markdown.split("### 3. 协商发言", 1)[1]
    questions = item.split("#### 公众提问（已审核）", 1)[1].split("##", 1)[0]
    assert "项目何时完工？" in questions and "李先生" in questions and "预计2027年" in questions
    assert "项目何时完工？" not in markdown.split("### 3. 协商发言", 1)[0]
    assert "不该出现在纪要里" not in markdown
    for client in (host, observer):
        await client.close()


def test_the_record_keeps_approved_items_with_answers_and_makes_them_searchable() -> None:
    from server.recording.moment_index import moments_of, searchable
    from server.rooms.models import TimelineEntry
    from tests.recording.test_record_rules import T0, source

    def entry(at: float, entry_type: str, **data: object) -> TimelineEntry:
        ms = int((T0 + at) * 1000)
        return TimelineEntry(id=f"{ms}-0", ts=ms, type=entry_type, data=data)

    public = {"kind": "question", "name": None, "district": "石峰区", "answer": None}
    src = source(
        [
            entry(5, "gallery_submitted", id="g1", agenda_index=0),
            entry(6, "gallery_approved", id="g1", text="何时开工", agenda_index=0, **public),
            entry(
                7,
                "gallery_answered",
                id="g1",
                text="何时开工",
                agenda_index=0,
                **{**public, "answer": "明年"},
            ),
            # Approved before the span began; its answer inside the span brings the text.
            entry(
                8,
                "gallery_answered",
                id="g0",
                text="资金来源",
                agenda_index=1,
                **{**public, "answer": "省市共担"},
            ),
            entry(9, "gallery_rejected", id="g2", by="host"),
        ]
    )
    record = session_record(src)
    assert [(q.id, q.text, q.answer, q.agenda_index) for q in record.questions] == [
        ("g1", "何时开工", "明年", 0),
        ("g0", "资金来源", "省市共担", 1),
    ]
    assert record.questions[0].offset == 6.0
    found = [m for m in moments_of(record) if m.kind == "question"]
    assert [m.offset for m in found] == [6.0, 8.0]
    assert "开工" in searchable(found[0]) and "石峰区" in searchable(found[0])
    markdown = minutes_markdown(record)
    first, second = markdown.split("### 2. 发言", 1)
    assert "何时开工" in first and "答复：明年" in first and "资金来源" in second


async def test_a_successor_owner_keeps_the_moderation_queue(server: ServerHandle) -> None:
    from server.rooms.room_state import RoomState

    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    waiting = await observer.gallery_post("still waiting")
    shown = await observer.gallery_post("on screen")
    await host.gallery_show(shown)
    owned = server.owned_room(rid)
    assert owned is not None
    # What the owner writes behind is what a successor starts from.
    successor = RoomState.from_persisted(owned.state.room, owned.persisted(), [])
    assert successor.gallery[waiting].status == "pending"
    assert successor.gallery[shown].status == "approved"
    assert successor.gallery_on_screen == shown and successor.gallery_next == 3
    for client in (host, observer):
        await client.close()
