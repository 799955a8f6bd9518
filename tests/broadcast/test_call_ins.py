"""Call-ins (连线申请): a viewer of the live broadcast asks to speak, the host invites them,
and they go on stage in the room — through the real server, Redis and aiortc peers.

What the viewer and the host notice: the request reaches the hosts and nobody else;
the viewer's handle follows it and, once invited and accepted, gives one join
credential (an observer, fresh identity, main venue) that takes the stage seat; the
viewer publishes with the floor and is seen; the host ends it and they are an
observer again. And every refusal: bad bodies, unknown, used, lapsed, declined and
dismissed handles, another room's handle, a full queue, a second open request.
"""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import jwt
import pytest

from server.rooms import call_ins, stage
from server.rooms.models import Role
from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle
from tests.session_peer import SessionPeer

ASK = {"name": "李四", "district": "石峰区", "note": "想说说新城的公交"}


async def _post(
    server: ServerHandle,
    room_id: str,
    path: str,
    body: Any,
    address: str = "127.0.0.1",
    query: str = "",
) -> tuple[int, dict[str, Any]]:
    """POST from a client address of loopback (each test viewer its own: the server counts
    public viewers and their edge budget by address)."""
    url = f"{server.base_url}/live/{room_id}/call-ins{path}{query}"
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, json=body) as response,
    ):
        return response.status, await response.json()


async def _refused(call: object, code: str) -> None:
    with pytest.raises(SignalingError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code == code


async def test_a_viewer_asks_is_invited_goes_on_stage_and_returns(server: ServerHandle) -> None:
    room = await server.create_room(broadcast="public")
    rid = room["id"]
    host_token = await server.token(rid, "host", "host", "hunan")
    host = SessionPeer(server.base_url, host_token, 1)
    member = await server.client(rid, "m1", "member", "zhuzhou")
    observer = await server.client(rid, "o1", "observer", "shifeng")
    viewer: SessionPeer | None = None
    try:
        await host.join()
        status, asked = await _post(server, rid, "", ASK)
        assert status == 202, asked
        handle = asked["handle"]
        assert asked["status"] == "pending" and len(handle) >= 43
        # The room's record (written behind, taken over by a successor) keeps the request
        # with the handle's digest, never the handle.
        owned = server.owned_room(rid)
        assert owned is not None
        record = owned.persisted().call_ins[0]
        assert record.handle_digest == hashlib.sha256(handle.encode()).hexdigest()
        assert handle not in owned.persisted().model_dump_json()

        # The request reaches the host (and co-hosts, moderators), nobody else.
        signaling = host.signaling
        await signaling.wait_for(lambda: asked["id"] in signaling.call_ins)
        item = signaling.call_ins[asked["id"]]
        assert (item.name, item.district, item.note) == ("李四", "石峰区", "想说说新城的公交")
        assert "handle" not in item.model_dump() and "handle_digest" not in item.model_dump()
        assert member.call_ins == {} and observer.call_ins == {}
        assert not any(name == "call_in_queue" for name, _ in member.received)

        # Before an invitation: the page waits, and has nothing to accept.
        status, body = await _post(server, rid, "/status", {"handle": handle})
        assert (status, body["status"]) == (200, "pending")
        status, body = await _post(server, rid, "/accept", {"handle": handle})
        assert (status, body["error"]["code"]) == (409, "call_in_not_invited")

        # Only a host or co-host invites (a member, an observer: refused).
        await _refused(member.call("call_in_invite", {"id": asked["id"]}), "host_only")
        await _refused(observer.call("call_in_invite", {"id": asked["id"]}), "host_only")
        await _refused(signaling.call("call_in_invite", {"id": "c999"}), "call_in_not_found")
        ack = await signaling.call("call_in_invite", {"id": asked["id"]})
        identity = ack["item"]["identity"]
        assert identity.startswith(call_ins.IDENTITY_PREFIX)
        assert ack["live"]["stage"]["call_in"] == asked["id"]
        await _refused(signaling.call("call_in_invite", {"id": asked["id"]}), "call_in_not_pending")

        status, body = await _post(server, rid, "/status", {"handle": handle})
        assert (status, body["status"]) == (200, "invited") and body["expires_at"] > 0
        status, accepted = await _post(server, rid, "/accept", {"handle": handle})
        assert status == 200, accepted
        # The credential: this room, an observer, the fresh identity, the main venue.
        claims = jwt.decode(accepted["token"], options={"verify_signature": False})
        assert claims["room"] == rid and claims["role"] == "observer"
        assert claims["sub"] == identity == accepted["identity"]
        assert claims["venue"] == "hunan" and claims["name"] == "李四"
        assert accepted["join_url"].startswith("/join?token=")
        # Once only.
        status, body = await _post(server, rid, "/accept", {"handle": handle})
        assert (status, body["error"]["code"]) == (409, "call_in_used")

        # The viewer enters the room, takes the seat (already invited: no second question),
        # publishes with the floor and is seen.
        viewer = SessionPeer(server.base_url, accepted["token"], 2)
        await viewer.join()
        assert viewer.signaling.you.role is Role.OBSERVER
        taken = await viewer.signaling.call("stage_accept")
        assert taken["participant"]["role"] == "guest"
        assert taken["live"]["floor"]["identity"] == identity
        await viewer.publish()
        await host.wait_for(lambda: host.frames_from(identity, "video") >= 10)
        await member.wait_for(lambda: member.participants[identity].role is Role.GUEST)
        status, body = await _post(server, rid, "/status", {"handle": handle})
        assert body["status"] == "on_stage"
        await signaling.wait_for(lambda: signaling.call_ins[asked["id"]].status == "on_stage")
        status, body = await _post(server, rid, "/decline", {"handle": handle})
        assert (status, body["error"]["code"]) == (409, "call_in_on_stage")

        # The host ends it: off the air, an observer again; the request is over.
        await signaling.call("stage_end")
        await host.wait_for(lambda: not host.tracks_from(identity, "video"))
        await viewer.signaling.wait_for(
            lambda: (
                viewer is not None and viewer.signaling.participants[identity].role is Role.OBSERVER
            )
        )
        status, body = await _post(server, rid, "/status", {"handle": handle})
        assert body["status"] == "ended"
        kinds = [e.type for e in signaling.timeline]
        for kind in ("call_in_accepted", "stage_invited", "stage_started", "stage_ended"):
            assert kind in kinds, kinds
        invited = next(e for e in signaling.timeline if e.type == "stage_invited")
        assert invited.data["call_in"] == asked["id"] and invited.data["identity"] == identity
        # The request's text is nowhere in what everyone sees.
        assert "公交" not in str([e.data for e in member.timeline])
    finally:
        for peer in (viewer, host):
            if peer is not None:
                await peer.close()
        for client in (member, observer):
            await client.close()


async def test_every_refusal(server: ServerHandle) -> None:
    rid = (await server.create_room(broadcast="public"))["id"]
    other_rid = (await server.create_room(broadcast="public"))["id"]
    host = await server.client(rid, "host", "host", "hunan")
    other_host = await server.client(other_rid, "host", "host", "hunan")
    try:
        # The body names no room, role or venue; sizes are bounded; no handle is guessed.
        for n, body in enumerate(
            (
                {"name": "王五", "role": "host"},
                {"name": "王五", "room": other_rid},
                {"name": ""},
                {"name": "x" * 65},
                {"name": "王五", "note": "x" * 201},
                {"name": "王\u202e五"},
            )
        ):
            status, answer = await _post(server, rid, "", body, f"127.0.3.{n + 1}")
            assert (status, answer["error"]["code"]) == (422, "invalid_request"), body
        status, answer = await _post(server, rid, "/status", {"handle": "short"})
        assert (status, answer["error"]["code"]) == (422, "invalid_request")
        status, answer = await _post(server, rid, "/status", {"handle": "A" * 43})
        assert (status, answer["error"]["code"]) == (404, "call_in_not_found")
        status, answer = await _post(server, "no-such-room", "", ASK)
        assert (status, answer["error"]["code"]) == (404, "room_not_found")

        # One open request per viewer; its handle works in its own room only.
        status, first = await _post(server, rid, "", ASK, "127.0.0.2")
        assert status == 202
        status, answer = await _post(server, rid, "", ASK, "127.0.0.2")
        assert (status, answer["error"]["code"]) == (409, "call_in_open")
        status, answer = await _post(
            server, other_rid, "/status", {"handle": first["handle"]}, "127.0.0.2"
        )
        assert (status, answer["error"]["code"]) == (404, "call_in_not_found")
        await _refused(other_host.call("call_in_invite", {"id": first["id"]}), "call_in_not_found")

        # Taken back by the viewer: closed for good (a second take-back changes nothing).
        status, answer = await _post(
            server, rid, "/decline", {"handle": first["handle"]}, "127.0.0.2"
        )
        assert (status, answer["status"]) == (200, "declined")
        status, answer = await _post(
            server, rid, "/accept", {"handle": first["handle"]}, "127.0.0.2"
        )
        assert (status, answer["error"]["code"]) == (409, "call_in_closed")
        await _refused(host.call("call_in_invite", {"id": first["id"]}), "call_in_not_pending")

        # Dismissed by the host: the page learns it, and cannot accept.
        status, second = await _post(server, rid, "", ASK, "127.0.0.5")
        assert status == 202
        await host.call("call_in_dismiss", {"id": second["id"]})
        status, answer = await _post(
            server, rid, "/status", {"handle": second["handle"]}, "127.0.0.5"
        )
        assert answer["status"] == "dismissed"
        status, answer = await _post(
            server, rid, "/accept", {"handle": second["handle"]}, "127.0.0.5"
        )
        assert (status, answer["error"]["code"]) == (409, "call_in_closed")

        # Invited, then declined on the broadcast page: the seat is free again at once.
        status, third = await _post(server, rid, "", ASK, "127.0.0.3")
        await host.call("call_in_invite", {"id": third["id"]})
        status, fourth = await _post(server, rid, "", ASK, "127.0.0.4")
        await _refused(host.call("call_in_invite", {"id": fourth["id"]}), "stage_busy")
        status, answer = await _post(
            server, rid, "/decline", {"handle": third["handle"]}, "127.0.0.3"
        )
        assert answer["status"] == "declined"
        await host.wait_for(lambda: host.live.stage is None)
        # The host withdraws an accepted invitation before the viewer comes: the credential's
        # seat is gone (the token alone makes nobody a guest).
        await host.call("call_in_invite", {"id": fourth["id"]})
        status, accepted = await _post(
            server, rid, "/accept", {"handle": fourth["handle"]}, "127.0.0.4"
        )
        assert status == 200
        await host.call("stage_end")
        status, answer = await _post(
            server, rid, "/status", {"handle": fourth["handle"]}, "127.0.0.4"
        )
        assert answer["status"] == "withdrawn"
        late = RoomClient(server.base_url, accepted["token"])
        try:
            snapshot = await late.connect()
            assert snapshot.you.role is Role.OBSERVER
            await _refused(late.call("stage_accept"), "no_stage_invite")
            # A viewer cannot invite itself, in the room or otherwise.
            await _refused(late.call("call_in_invite", {"id": fourth["id"]}), "host_only")
        finally:
            await late.close()
        status, answer = await _post(
            server, rid, "/accept", {"handle": fourth["handle"]}, "127.0.0.4"
        )
        assert (status, answer["error"]["code"]) == (409, "call_in_closed")
    finally:
        await host.close()
        await other_host.close()


async def test_an_unanswered_invitation_lapses_and_the_queue_is_bounded(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner's real timer, on a shorter invitation than the default.
    monkeypatch.setattr(stage, "CALL_IN_INVITE_SECONDS", 0.5)
    monkeypatch.setattr(call_ins, "MAX_PENDING", 3)
    rid = (await server.create_room(broadcast="public"))["id"]
    host = await server.client(rid, "host", "host", "hunan")
    try:
        handles = []
        for n in range(3):
            status, asked = await _post(server, rid, "", ASK, f"127.0.1.{n + 1}")
            assert status == 202
            handles.append(asked)
        status, answer = await _post(server, rid, "", ASK, "127.0.1.9")
        assert (status, answer["error"]["code"]) == (409, "call_ins_full")

        await host.call("call_in_invite", {"id": handles[0]["id"]})
        await host.wait_for(
            lambda: host.call_ins[handles[0]["id"]].status == "expired" and host.live.stage is None
        )
        status, answer = await _post(server, rid, "/accept", {"handle": handles[0]["handle"]})
        assert (status, answer["error"]["code"]) == (409, "call_in_expired")
        # A place in the queue is free again.
        status, answer = await _post(server, rid, "", ASK, "127.0.1.9")
        assert status == 202
    finally:
        await host.close()


async def test_token_broadcasts_and_the_edge_rate(server: ServerHandle) -> None:
    rid = (await server.create_room(broadcast="token"))["id"]
    status, answer = await _post(server, rid, "", ASK)
    assert (status, answer["error"]["code"]) == (401, "token_missing")
    member_token = await server.token(rid, "m1", "member", "zhuzhou")
    status, answer = await _post(server, rid, "", ASK, query=f"?token={member_token}")
    assert (status, answer["error"]["code"]) == (403, "not_viewer")
    # A viewer token's holder asks as that viewer; the address's budget is small.
    host = await server.client(rid, "host", "host", "hunan")
    try:
        viewer_token = await server.token(rid, "v1", "viewer", "hunan")
        statuses = [
            (await _post(server, rid, "", ASK, "127.0.2.1", f"?token={viewer_token}"))[0]
            for _ in range(3)
        ]
        assert statuses == [202, 409, 429]
        owned = server.owned_room(rid)
        assert owned is not None
        assert [c.by for c in owned.state.call_ins.values()] == ["v1"]
    finally:
        await host.close()


async def test_an_invited_viewer_is_not_held_in_the_lobby_of_a_locked_session(
    server: ServerHandle,
) -> None:
    rid = (await server.create_room(broadcast="public", lobby=True))["id"]
    host = await server.client(rid, "host", "host", "hunan")
    viewer: RoomClient | None = None
    try:
        await host.set_lock(True)
        status, asked = await _post(server, rid, "", ASK, "127.0.4.1")
        assert status == 202
        await host.call("call_in_invite", {"id": asked["id"]})
        status, accepted = await _post(
            server, rid, "/accept", {"handle": asked["handle"]}, "127.0.4.1"
        )
        assert status == 200, accepted
        # The host invited them: in at once (a snapshot, not the lobby), and on stage.
        viewer = RoomClient(server.base_url, accepted["token"])
        snapshot = await viewer.connect()
        assert snapshot.you.identity == accepted["identity"]
        assert (await viewer.call("stage_accept"))["participant"]["role"] == "guest"
        assert host.snapshot is not None and host.snapshot.lobby == []
    finally:
        if viewer is not None:
            await viewer.close()
        await host.close()
