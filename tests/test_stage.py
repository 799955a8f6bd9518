"""连线: an observer brought on stage as a guest, through the real server, with real media.

The rules (`server.rooms.stage`) first, then who may do what over Socket.IO, then
the media: the guest's frames reach everyone while it is on stage and stop when
the connection ends, and guests publish only while they hold the floor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.rooms import stage
from server.rooms.errors import Conflict
from server.rooms.models import LiveState, Role
from signaling.client import RoomClient, SignalingError
from tests.cluster_kit import cluster
from tests.helpers import ServerHandle
from tests.media.media_testkit import CounterVideoTrack, ToneAudioTrack
from tests.session_peer import SessionPeer


def test_the_seat_rules() -> None:
    live = LiveState(status="live", queue=["o1", "m1"])
    invited = stage.invite(live, "o1", "host", 1000.0, "i1")
    assert invited.stage is not None and invited.stage.status == "invited"
    assert stage.role_on_stage(invited, "o1", Role.OBSERVER) is Role.OBSERVER
    with pytest.raises(Conflict) as busy:
        stage.invite(invited, "o2", "host", 2000.0, "i2")
    assert busy.value.code == "stage_busy"
    with pytest.raises(Conflict) as not_you:
        stage.accept(invited, "o2", 2000.0, "g1")
    assert not_you.value.code == "no_stage_invite"
    # Too late: the invitation lapsed, and the seat is free for another.
    late = 1000.0 + stage.INVITE_SECONDS * 1000.0 + 1
    with pytest.raises(Conflict):
        stage.accept(invited, "o1", late, "g1")
    assert stage.invite(invited, "o2", "host", late, "i2").stage is not None
    on = stage.accept(invited, "o1", 2000.0, "g1")
    assert on.stage is not None and on.stage.status == "on_stage"
    assert on.floor is not None and on.floor.identity == "o1" and on.queue == ["m1"]
    assert stage.role_on_stage(on, "o1", Role.OBSERVER) is Role.GUEST
    # The ceiling is the token: only an observer is raised, and only its own seat counts.
    assert stage.role_on_stage(on, "o1", Role.MEMBER) is Role.MEMBER
    assert stage.role_on_stage(on, "o2", Role.OBSERVER) is Role.OBSERVER
    off = stage.end(on)
    assert off.stage is None and off.floor is None
    with pytest.raises(Conflict) as nobody:
        stage.end(off)
    assert nobody.value.code == "not_on_stage"
    assert stage.expire(invited, "other", late).stage is not None
    assert stage.expire(invited, "i1", 2000.0).stage is not None  # not due yet
    assert stage.expire(invited, "i1", late).stage is None
    assert stage.decline(invited, "o1", 2000.0).stage is None


def test_guests_publish_only_with_the_floor() -> None:
    assert not stage.may_publish(Role.OBSERVER, True)
    assert not stage.may_publish(Role.GUEST, False)
    assert stage.may_publish(Role.GUEST, True)
    assert stage.may_publish(Role.MEMBER, False) and stage.may_publish(Role.HOST, False)


async def _refused(call: object, code: str) -> None:
    with pytest.raises(SignalingError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code == code


async def test_who_may_invite_accept_and_end(server: ServerHandle) -> None:
    rid = (await server.create_room())["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    other = await server.client(rid, "o2", "observer", "national")
    clients = (host, member, observer, other)
    try:
        # An observer asks to be connected with a raised hand...
        await observer.raise_hand()
        # ...which the next-speaker button passes over (it is answered with an invitation).
        await _refused(host.call("next_speaker"), "queue_empty")
        # Nobody raises themselves: no invitation, no media, and members cannot invite.
        await _refused(observer.call("stage_accept"), "no_stage_invite")
        await _refused(observer.call("publish_offer", {"sdp": "v=0"}), "publish_forbidden")
        await _refused(member.call("stage_invite", {"identity": "o1"}), "host_only")
        await _refused(host.call("stage_invite", {"identity": "m1"}), "not_an_observer")
        await _refused(host.call("stage_invite", {"identity": "nobody"}), "participant_not_found")
        await _refused(
            host.call("stage_invite", {"identity": "o1", "role": "host"}), "invalid_payload"
        )
        await _refused(host.call("stage_end"), "not_on_stage")

        await host.call("stage_invite", {"identity": "o1", "time_limit_seconds": 300})
        await _refused(host.call("stage_invite", {"identity": "o2"}), "stage_busy")
        await _refused(other.call("stage_accept"), "no_stage_invite")
        ack = await observer.call("stage_accept")
        assert ack["participant"]["role"] == "guest"
        assert ack["live"]["floor"]["identity"] == "o1"
        await member.wait_for(
            lambda: (
                member.participants["o1"].role is Role.GUEST
                and member.live.stage is not None
                and member.live.stage.status == "on_stage"
            )
        )
        await host.wait_for(lambda: host.live.floor is not None)
        assert host.live.queue == []  # the hand was answered
        # The guest may end it, and so may a host; a member may not.
        await _refused(member.call("stage_end"), "host_only")
        await observer.call("stage_end")
        await member.wait_for(lambda: member.participants["o1"].role is Role.OBSERVER)
        assert member.live.stage is None and member.live.floor is None
        types = [e.type for e in member.timeline]
        for kind in ("stage_invited", "stage_started", "floor_granted", "stage_ended"):
            assert kind in types, types
        ended = next(e for e in member.timeline if e.type == "stage_ended")
        assert ended.data["identity"] == "o1" and ended.data["reason"] == "ended"

        # An invitation can be declined, and an invited observer who leaves frees the seat.
        await host.call("stage_invite", {"identity": "o2"})
        await other.call("stage_decline")
        await host.wait_for(lambda: any(e.type == "stage_declined" for e in host.timeline))
        assert host.live.stage is None
        await host.call("stage_invite", {"identity": "o2"})
        await other.close()
        await host.wait_for(lambda: any(e.type == "stage_invite_withdrawn" for e in host.timeline))
        assert host.live.stage is None
    finally:
        for client in clients:
            await client.close()


async def test_the_stage_survives_a_reconnect_and_ends_when_the_guest_leaves(
    server: ServerHandle,
) -> None:
    rid = (await server.create_room())["id"]
    host = await server.client(rid, "host", "host", "hunan")
    token = await server.token(rid, "o1", "observer", "shifeng")
    first = RoomClient(server.base_url, token)
    await first.connect()
    second = RoomClient(server.base_url, token)
    try:
        await host.call("stage_invite", {"identity": "o1"})
        await first.call("stage_accept")
        # A reload: the new connection is still the guest on stage (room state, not the
        # token), and the room's record says so.
        snapshot = await second.connect()
        assert snapshot.you.role is Role.GUEST
        owned = server.owned_room(rid)
        assert owned is not None and owned.persisted().live.stage is not None
        await second.close()
        await host.wait_for(lambda: "o1" not in host.participants and host.live.stage is None)
        ended = [e for e in host.timeline if e.type == "stage_ended"]
        assert ended and ended[-1].data["reason"] == "left"
    finally:
        for client in (host, first, second):
            await client.close()


async def test_an_unanswered_invitation_lapses(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real timer of the owner's actor, on a shorter invitation than the 60 s default.
    monkeypatch.setattr(stage, "INVITE_SECONDS", 0.5)
    rid = (await server.create_room())["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    try:
        await host.call("stage_invite", {"identity": "o1"})
        await observer.wait_for(
            lambda: any(e.type == "stage_invite_expired" for e in observer.timeline)
        )
        assert observer.live.stage is None
        await _refused(observer.call("stage_accept"), "no_stage_invite")
        # The seat is free for the next invitation.
        await host.call("stage_invite", {"identity": "o1"})
    finally:
        for client in (host, observer):
            await client.close()


async def test_the_end_of_the_session_ends_the_connection(server: ServerHandle) -> None:
    rid = (await server.create_room())["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    try:
        await host.call("stage_invite", {"identity": "o1"})
        await observer.call("stage_accept")
        await host.call("end_session")
        await host.wait_for(lambda: any(e.type == "session_ended" for e in host.timeline))
        ended = [e for e in host.timeline if e.type == "stage_ended"]
        assert ended and ended[-1].data["reason"] == "session_ended"
        status, detail = await server.request("GET", f"/api/rooms/{rid}")
        assert status == 200 and detail["live"]["stage"] is None
    finally:
        for client in (host, observer):
            await client.close()


# --- media -----------------------------------------------------------------------------


async def _publish_afresh(peer: SessionPeer) -> None:
    """Publish again after the server closed the publish connection: a new connection with
    freshly captured tracks, as the browser does."""
    if peer.publish_pc is not None:
        await peer.publish_pc.close()
    peer.video = CounterVideoTrack(peer.index, 160, 120)
    peer.audio = ToneAudioTrack(0.0)
    await peer.publish()


class Stage:
    """A room with a host, a member watching and an observer, all with real peers."""

    def __init__(self, server: ServerHandle, room_id: str) -> None:
        self.server = server
        self.room_id = room_id
        self.peers: list[SessionPeer] = []

    async def peer(self, identity: str, role: str, venue: str, publish: bool) -> SessionPeer:
        token = await self.server.token(self.room_id, identity, role, venue)
        peer = SessionPeer(self.server.base_url, token, len(self.peers) + 1)
        self.peers.append(peer)
        await peer.join()
        if publish:
            await peer.publish()
        return peer


@pytest.fixture
async def room(server: ServerHandle) -> AsyncIterator[Stage]:
    stage_room = Stage(server, (await server.create_room())["id"])
    try:
        yield stage_room
    finally:
        for peer in stage_room.peers:
            await peer.close()


async def test_an_observer_on_stage_is_seen_and_heard_then_returned(room: Stage) -> None:
    host = await room.peer("host", "host", "hunan", publish=True)
    member = await room.peer("m1", "member", "zhuzhou", publish=False)
    observer = await room.peer("o1", "observer", "shifeng", publish=False)
    await host.signaling.call("stage_invite", {"identity": "o1"})
    await observer.signaling.wait_for(lambda: observer.signaling.live.stage is not None)
    await observer.signaling.call("stage_accept")
    await observer.publish()

    def sees_guest(peer: SessionPeer) -> bool:
        return peer.frames_from("o1", "video") >= 10 and peer.frames_from("o1", "audio") >= 10

    await member.wait_for(lambda: sees_guest(member))
    await host.wait_for(lambda: sees_guest(host))

    await host.signaling.call("stage_end")
    # Its tracks end for everybody, and it is an observer again: it cannot publish.
    await member.wait_for(lambda: not member.tracks_from("o1", "video"))
    await host.wait_for(
        lambda: not host.tracks_from("o1", "video") and not host.tracks_from("o1", "audio")
    )
    await observer.signaling.wait_for(
        lambda: observer.signaling.participants["o1"].role is Role.OBSERVER
    )
    with pytest.raises(SignalingError) as refused:
        await _publish_afresh(observer)
    assert refused.value.code == "publish_forbidden"
    media = room.server.media_room(room.room_id)
    assert media is not None
    assert not [t for t in media.tracks() if t.participant_id == "o1"]


async def test_a_guest_publishes_only_while_holding_the_floor(room: Stage) -> None:
    host = await room.peer("host", "host", "hunan", publish=True)
    await room.peer("m1", "member", "zhuzhou", publish=True)
    observer = await room.peer("o1", "observer", "shifeng", publish=False)
    await host.signaling.call("stage_invite", {"identity": "o1"})
    await observer.signaling.call("stage_accept")
    await observer.publish()
    await host.wait_for(lambda: host.frames_from("o1", "video") >= 5)
    # The host gives the floor to a member: the guest stays on stage but is off the air...
    await host.signaling.call("grant_floor", {"identity": "m1"})
    await host.wait_for(lambda: not host.tracks_from("o1", "video"))
    assert host.signaling.participants["o1"].role is Role.GUEST
    with pytest.raises(SignalingError) as refused:
        await _publish_afresh(observer)
    assert refused.value.code == "floor_required"
    # ...until the floor comes back to it.
    await host.signaling.call("grant_floor", {"identity": "o1"})
    await _publish_afresh(observer)
    await host.wait_for(lambda: host.frames_from("o1", "video") >= 5)


async def test_a_guest_by_token_needs_the_floor_to_publish(room: Stage) -> None:
    host = await room.peer("host", "host", "hunan", publish=False)
    guest = await room.peer("g1", "guest", "national", publish=False)
    with pytest.raises(SignalingError) as refused:
        await guest.publish()
    assert refused.value.code == "floor_required"
    await host.signaling.call("grant_floor", {"identity": "g1"})
    await _publish_afresh(guest)
    await host.wait_for(lambda: host.frames_from("g1", "video") >= 5)
    await host.signaling.call("revoke_floor")
    await host.wait_for(lambda: not host.tracks_from("g1", "video"))


async def test_the_rest_api_and_the_timeline_show_the_connection(server: ServerHandle) -> None:
    rid = (await server.create_room())["id"]
    host = await server.client(rid, "host", "host", "hunan")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    try:
        await host.call("stage_invite", {"identity": "o1"})
        await observer.call("stage_accept")
        status, detail = await server.request("GET", f"/api/rooms/{rid}")
        assert status == 200, detail
        assert detail["live"]["stage"]["identity"] == "o1"
        assert detail["live"]["stage"]["status"] == "on_stage"
        await host.call("stage_end")
        await host.wait_for(lambda: any(e.type == "stage_ended" for e in host.timeline))
        kinds = [e.type for e in host.timeline]
        assert kinds.index("stage_invited") < kinds.index("stage_started")
        assert kinds.index("stage_started") < kinds.index("stage_ended")
        # The speaking record counts a guest's turn like anyone's.
        granted = [e for e in host.timeline if e.type == "floor_granted"]
        assert granted[-1].data["identity"] == "o1" and granted[-1].data["role"] == "guest"
        status, detail = await server.request("GET", f"/api/rooms/{rid}")
        assert detail["live"]["stage"] is None
    finally:
        for client in (host, observer):
            await client.close()


async def test_the_stage_survives_a_handover_to_another_node(tmp_path: Path) -> None:
    """The seat is room state: when the owner drains, the successor keeps the guest on
    stage with the floor, and the guest's media comes back through the new owner."""
    async with cluster(tmp_path, 2) as c:
        a, b = c.nodes
        room_id = await c.create_room()
        host = await c.peer(a, room_id, "host", "host", "hunan", 1)  # A owns the room
        guest = await c.peer(b, room_id, "o1", "observer", "national", 2)
        try:
            await host.signaling.call("stage_invite", {"identity": "o1"})
            await guest.signaling.call("stage_accept")
            await guest.publish()
            await host.wait_for(lambda: host.frames_from("o1", "video") >= 10, timeout=30)
            assert await a.stop() == 0  # drains: the room is handed over to B
            since = host.frames_ever("o1", "video")
            detail = await c.detail(room_id, b)
            assert detail["live"]["stage"]["identity"] == "o1"
            assert detail["live"]["stage"]["status"] == "on_stage"
            assert detail["live"]["floor"]["identity"] == "o1"
            roles = {p["identity"]: p["role"] for p in detail["participants"]}
            assert roles["o1"] == "guest"
            # The guest publishes again to the new owner (it still holds the floor).
            await host.wait_for(
                lambda: (
                    host.frames_ever("o1", "video") >= since + 10
                    and host.frames_from("o1", "video") > 0
                ),
                timeout=30,
            )
            await host.signaling.call("stage_end")
            await host.wait_for(lambda: not host.tracks_from("o1", "video"), timeout=15)
        finally:
            for peer in (host, guest):
                await peer.close()
