"""Socket.IO: connect with a token, snapshot, live updates, and refusal of bad input."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.rooms.models import Invitee, Role
from server.rooms.tokens import TokenSigner
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def test_connect_refused_without_valid_token(server: ServerHandle) -> None:
    room = await server.create_room()
    good = await server.token(room["id"], "m1", "member", "zhuzhou")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    foreign = TokenSigner("x" * 40).issue(
        room["id"], Invitee(identity="m1", name="M", role=Role.HOST, venue="hunan"), 60
    )[0]
    for token, code in [
        ("", "token_missing"),
        ("not-a-jwt", "token_invalid"),
        (tampered, "token_invalid"),
        (foreign, "token_invalid"),
        ("x" * 5000, "token_invalid"),
    ]:
        client = RoomClient(server.base_url, token)
        with pytest.raises(SignalingError) as refused:
            await client.connect()
        assert refused.value.code == code, token[:20]


async def test_expired_token_is_refused(server: ServerHandle) -> None:
    room = await server.create_room()
    signer = server.app[__import__("server.appkeys", fromlist=["CATALOG"]).CATALOG].signer
    token, _ = signer.issue(
        room["id"], Invitee(identity="m1", name="M", role=Role.MEMBER, venue="hunan"), -10
    )
    with pytest.raises(SignalingError) as refused:
        await RoomClient(server.base_url, token).connect()
    assert refused.value.code == "token_expired"


async def test_token_for_deleted_room_is_refused(server: ServerHandle) -> None:
    room = await server.create_room()
    token = await server.token(room["id"], "m1", "member", "zhuzhou")
    await server.request("DELETE", f"/api/rooms/{room['id']}")
    with pytest.raises(SignalingError) as refused:
        await RoomClient(server.base_url, token).connect()
    assert refused.value.code == "room_not_found"


async def test_snapshot_and_live_updates_between_two_clients(server: ServerHandle) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    snapshot = host.snapshot
    assert snapshot is not None
    assert snapshot.you.identity == "host" and snapshot.you.role is Role.HOST
    assert snapshot.room.id == room["id"]
    assert [v.level.value for v in snapshot.room.venues] == [
        "national",
        "provincial",
        "city",
        "county",
    ]
    assert snapshot.live.status == "live"
    assert [p.identity for p in snapshot.participants] == ["host"]

    member = await server.client(room["id"], "m1", "member", "shifeng")
    assert set(member.participants) == {"host", "m1"}
    await host.wait_for(lambda: "m1" in host.participants)
    assert host.participants["m1"].venue == "shifeng"

    await member.set_media_state(audio_muted=True, video_muted=False)
    await host.wait_for(lambda: host.participants["m1"].audio_muted)

    entry = await member.chat("清水塘的生态修复要先行")
    await host.wait_for(lambda: any(e.id == entry.id for e in host.timeline))
    chat = next(e for e in host.timeline if e.id == entry.id)
    assert chat.type == "chat" and chat.data["text"] == "清水塘的生态修复要先行"
    assert chat.data["venue"] == "shifeng"

    await member.close()
    await host.wait_for(lambda: "m1" not in host.participants)
    await host.wait_for(lambda: any(e.type == "left" for e in host.timeline))
    left = next(e for e in host.timeline if e.type == "left")
    assert left.data["identity"] == "m1" and left.data["reason"] == "left"
    await host.close()


async def test_role_and_venue_come_from_the_token_not_the_payload(server: ServerHandle) -> None:
    room = await server.create_room()
    member = await server.client(room["id"], "m1", "member", "zhuzhou")
    ack = await member.emit_raw("join", {"role": "host", "venue": "hunan"})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    with pytest.raises(SignalingError) as refused:
        await member.call("grant_floor", {"identity": "m1", "role": "host"})
    assert refused.value.code == "invalid_payload"
    with pytest.raises(SignalingError) as refused:
        await member.grant_floor("m1")
    assert refused.value.code == "host_only"
    assert member.participants["m1"].role is Role.MEMBER
    await member.close()


HOST_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("grant_floor", {"identity": "m1"}),
    ("next_speaker", {}),
    ("advance_agenda", {}),
    ("set_lock", {"locked": True}),
    ("request_mute", {"identity": "host"}),
    ("remove_participant", {"identity": "host"}),
    ("end_session", {}),
    ("lower_hand", {"identity": "m2"}),
]


async def test_member_sending_host_events_gets_error_and_state_is_unchanged(
    server: ServerHandle,
) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    member = await server.client(room["id"], "m1", "member", "zhuzhou")
    other = await server.client(room["id"], "m2", "member", "national")
    await other.raise_hand()
    await member.wait_for(lambda: member.live.queue == ["m2"])
    before = member.live
    for event, payload in HOST_ONLY:
        with pytest.raises(SignalingError) as refused:
            await member.call(event, payload)
        assert refused.value.code == "host_only", event
    _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
    assert detail["live"] == before.model_dump(mode="json")
    assert {p["identity"] for p in detail["participants"]} == {"host", "m1", "m2"}
    for client in (host, member, other):
        await client.close()


async def test_observer_cannot_chat_or_get_the_floor(server: ServerHandle) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    observer = await server.client(room["id"], "o1", "observer", "shifeng")
    with pytest.raises(SignalingError) as refused:
        await observer.chat("hello")
    assert refused.value.code == "forbidden"
    # A raised hand asks to be connected (tests/test_stage.py); the floor needs the stage.
    assert (await observer.raise_hand()).queue == ["o1"]
    with pytest.raises(SignalingError) as refused:
        await host.grant_floor("o1")
    assert refused.value.code == "cannot_speak"
    await observer.close()
    await host.close()


@pytest.mark.parametrize(
    ("event", "payload", "code"),
    [
        ("no_such_event", {}, "unknown_event"),
        ("chat", {"text": ""}, "invalid_payload"),
        ("chat", {"text": "x" * 1001}, "invalid_payload"),
        ("chat", {"text": 42}, "invalid_payload"),
        ("chat", "just a string", "invalid_payload"),
        ("chat", [1, 2, 3], "invalid_payload"),
        ("chat", {"text": "x", "extra": 1}, "invalid_payload"),
        ("chat", {"text": "y" * 5000}, "payload_too_large"),
        ("media_state", {"audio_muted": "yes", "video_muted": False}, "invalid_payload"),
        ("grant_floor", {"identity": "../../etc"}, "invalid_payload"),
        ("grant_floor", {"identity": "m1", "time_limit_seconds": 0}, "invalid_payload"),
        ("grant_floor", {"identity": "m1", "time_limit_seconds": 10**9}, "invalid_payload"),
        ("advance_agenda", {"index": -1}, "invalid_payload"),
        ("subscriber_answer", {"sdp": "v=0\r\n", "offer_id": "<script>"}, "invalid_payload"),
        ("subscriber_answer", {"sdp": "v=0\r\n", "offer_id": "a" * 65}, "invalid_payload"),
        ("request_mute", {"identity": "m1", "kind": "screen"}, "invalid_payload"),
    ],
)
async def test_invalid_payloads_get_error_acks(
    server: ServerHandle, event: str, payload: Any, code: str
) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    ack = await host.emit_raw(event, payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    # The connection still works and nothing changed.
    assert (await host.chat("still here")).data["text"] == "still here"
    assert not [e for e in host.timeline if e.type == "chat" and e.data["text"] != "still here"]
    await host.close()


async def test_events_before_join_are_refused(server: ServerHandle) -> None:
    room = await server.create_room()
    client = RoomClient(server.base_url, await server.token(room["id"], "m1", "member", "hunan"))
    await client.connect()
    ack = await client.emit_raw("join", {})
    assert ack["error"]["code"] == "already_joined"
    await client.close()


async def test_event_flood_is_rate_limited_and_connection_survives(server: ServerHandle) -> None:
    room = await server.create_room()
    member = await server.client(room["id"], "m1", "member", "hunan")
    codes = []
    for _ in range(60):
        ack = await member.emit_raw("media_state", {"audio_muted": False, "video_muted": False})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert "rate_limited" in codes
    assert codes[0] == "ok"
    # Chat has its own tighter budget.
    chat_codes = []
    for index in range(8):
        ack = await member.emit_raw("chat", {"text": f"m{index}"})
        chat_codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert chat_codes.count("ok") <= 5
    started = time.monotonic()
    await member.wait_for(lambda: time.monotonic() - started > 0, timeout=1)
    await member.close()
