"""The control room's live feed (`/control`) against a real server with aiortc participants.

Two venues publish through the real server; an operator's Socket.IO client
connected to `/control` with the admin key gets snapshots in which each
participant shows what the server measures of their media. The operator's
`reconnect_participant` action makes that participant rebuild its peer
connections, and nobody else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio

from signaling.client import RoomClient, SignalingError
from signaling.control import ControlNamespace
from tests.cluster_kit import cluster
from tests.conftest import free_port
from tests.helpers import ServerHandle, eventually, run_server
from tests.session_peer import SessionPeer


@dataclass
class Operator:
    """A control-room client: the snapshots it was pushed."""

    client: socketio.AsyncClient
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    def participant(self, room: str, identity: str) -> dict[str, Any] | None:
        """The participant as the latest snapshot shows them."""
        if not self.snapshots:
            return None
        for entry in self.snapshots[-1]["rooms"]:
            if entry["id"] == room:
                for p in entry.get("participants", []):
                    if p["identity"] == identity:
                        return dict(p)
        return None

    def room(self, room: str) -> dict[str, Any]:
        """The session as the latest snapshot shows it ({} if not there)."""
        rooms = self.snapshots[-1]["rooms"] if self.snapshots else []
        return next((dict(r) for r in rooms if r["id"] == room), {})

    def shows(self, room: str, identity: str, check: Callable[[dict[str, Any]], bool]) -> bool:
        """Whether the latest snapshot shows the participant and `check` holds of them."""
        p = self.participant(room, identity)
        return p is not None and check(p)

    async def call(self, event: str, data: Any) -> Any:
        """An action with its ack."""
        return await self.client.call(event, data, namespace="/control", timeout=10)


async def connect_operator(base_url: str, auth: Any) -> Operator:
    """Connect to `/control` (raises socketio.exceptions.ConnectionError when refused)."""
    client = socketio.AsyncClient(reconnection=False)
    operator = Operator(client)
    client.on("control_snapshot", operator.snapshots.append, namespace="/control")
    await client.connect(
        base_url, namespaces=["/control"], auth=auth, transports=["websocket"], wait_timeout=10
    )
    return operator


@pytest.fixture
async def fast_server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    """A server pushing control snapshots every half second."""
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, control_interval_seconds=0.5
    ) as handle:
        yield handle


def _measured(p: dict[str, Any]) -> bool:
    return (
        p.get("publish_state") == "connected"
        and (p.get("send_kbps") or 0) > 0
        and (p.get("receive_kbps") or 0) > 0
        and (p.get("fps") or 0) > 0
        and p.get("candidate") == "host"
        and p.get("rtt_ms") is not None
    )


def _publishing(p: dict[str, Any]) -> bool:
    return (
        p.get("publish_state") == "connected"
        and (p.get("send_kbps") or 0) > 0
        and (p.get("fps") or 0) > 0
        and p.get("candidate") == "host"
    )


async def test_control_feed_shows_each_venue_and_reconnect_rebuilds_only_that_one(
    fast_server: ServerHandle,
) -> None:
    server = fast_server
    room = (await server.create_room())["id"]
    host_token = await server.token(room, "host", "host", "hunan")
    member_token = await server.token(room, "m1", "member", "zhuzhou")
    host = SessionPeer(server.base_url, host_token, 1)
    member = SessionPeer(server.base_url, member_token, 2)
    operator = await connect_operator(server.base_url, {"key": server.api_key})
    try:
        for peer in (host, member):
            await peer.join()
            await peer.publish()
        await host.wait_for(lambda: host.frames_from("m1", "video") >= 5)
        await member.wait_for(lambda: member.frames_from("host", "video") >= 5)
        for identity in ("host", "m1"):
            await eventually(
                lambda i=identity: operator.shows(room, i, _measured),
                f"the control room shows {identity}'s media measured",
                within=20,
            )
        shown = operator.participant(room, "m1")
        assert shown is not None
        assert shown["venue"] == "zhuzhou"
        assert (shown["width"], shown["height"]) == (160, 120)
        snapshot = operator.snapshots[-1]
        entry = next(r for r in snapshot["rooms"] if r["id"] == room)
        assert {v["id"] for v in entry["venues"]} >= {"hunan", "zhuzhou"}
        assert any(n["id"] == entry["owner"] and n["rooms"] >= 1 for n in snapshot["nodes"])

        ack = await operator.call("reconnect_participant", {"room": room, "identity": "m1"})
        assert ack == {"ok": True}, ack
        await member.wait_for(lambda: member.media_restarts == 1)
        # It publishes and receives again on fresh connections ...
        frames = member.frames_from("host", "video")
        await member.wait_for(lambda: member.frames_from("host", "video") >= frames + 5)
        await host.wait_for(lambda: host.frames_from("m1", "video") >= 5)
        # ... and nobody else rebuilt anything.
        assert host.media_restarts == 0

        # The operator moves the spotlight to the city venue, and gives it back.
        assert (await operator.call("pin", {"room": room, "identity": "m1"})) == {"ok": True}
        await eventually(lambda: operator.room(room).get("pinned") == "m1", "the feed shows it")
        await host.wait_for(lambda: host.signaling.live.pinned == "m1")
        assert (await operator.call("pin", {"room": room, "identity": None})) == {"ok": True}
        await host.wait_for(lambda: host.signaling.live.pinned is None)

        unknown = await operator.call("reconnect_participant", {"room": room, "identity": "zz"})
        assert unknown["error"]["code"] == "participant_not_found"
        bad = await operator.call("reconnect_participant", {"room": room})
        assert bad["error"]["code"] == "invalid_payload"
    finally:
        await operator.client.disconnect()
        await host.close()
        await member.close()


async def test_control_namespace_refuses_without_the_admin_key(server: ServerHandle) -> None:
    for auth in (None, {}, {"key": "not-the-key"}, {"token": server.api_key}):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect_operator(server.base_url, auth)
    operator = await connect_operator(server.base_url, {"key": server.api_key})
    await operator.client.disconnect()
    # Wrong keys count towards the admin lock-out, like the REST API's: after ten, even
    # the right key is refused, on the namespace and on the REST API.
    for _ in range(10):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect_operator(server.base_url, {"key": "still-not-the-key"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect_operator(server.base_url, {"key": server.api_key})
    status, body = await server.request("GET", "/api/rooms")
    assert status == 429, body


def test_alerts_name_the_lossy_venue_the_silent_floor_holder_and_a_full_node() -> None:
    control = ControlNamespace(
        node_id="n1", connections=lambda: 0, connection_limit=100, max_rooms=10, loss_alert=0.05
    )
    base = {"venue": "v", "audio_muted": False, "audio_level": -20.0, "loss": 0.0}
    rooms = [
        {
            "id": "r",
            "floor": "speaker",
            "participants": [
                {**base, "identity": "lossy", "loss": 0.2, "downstream_loss": 0.3},
                # Downstream loss alone (others' upload loss reaches everyone) does not alert.
                {**base, "identity": "fine", "downstream_loss": 0.25},
                {**base, "identity": "speaker", "audio_level": -80.0},
            ],
        }
    ]
    nodes = [
        {"id": "n1", "connections": 95, "connection_limit": 100, "rooms": 2, "max_rooms": 10},
        {"id": "n2", "rooms": 5, "max_rooms": 10},
    ]
    alerts = control.alerts(rooms, nodes)
    assert {(a["kind"], a.get("identity") or a.get("node")) for a in alerts} == {
        ("loss", "lossy"),
        ("silent_floor", "speaker"),
        ("node_cap", "n1"),
    }
    quiet = [{**rooms[0], "participants": [{**base, "identity": "speaker"}]}]
    assert control.alerts(quiet, [{"id": "n3", "connections": 1, "connection_limit": 100}]) == []


def test_a_venues_latest_poor_check_is_an_alert_with_its_reasons() -> None:
    def check(identity: str, venue: str, at: float, verdict: str, *reasons: str) -> dict[str, Any]:
        return {"identity": identity, "venue": venue, "at": at,
                "overall": {"verdict": verdict, "reasons": list(reasons)}}  # fmt: skip

    control = ControlNamespace(node_id="n1", connections=lambda: 0, connection_limit=100,
                               max_rooms=None)  # fmt: skip
    prechecks: list[dict[str, Any]] = [
        {
            "room": "r",
            "checks": [
                check("a1", "shifeng", 10.0, "poor", "high_loss", "high_rtt"),
                # The same venue's other staff checked later and got through: cleared.
                check("a2", "lusong", 10.0, "poor", "udp_blocked_no_turn"),
                check("a3", "lusong", 20.0, "usable", "udp_blocked"),
                check("h", "main", 5.0, "good"),
            ],
        }
    ]
    alerts = control.alerts([], [], prechecks)
    assert alerts == [
        {"kind": "precheck", "room": "r", "venue": "shifeng", "identity": "a1",
         "reasons": ["high_loss", "high_rtt"], "at": 10.0}
    ]  # fmt: skip
    # A later good check of that venue clears it.
    prechecks[0]["checks"].append(check("a1", "shifeng", 30.0, "good"))
    assert control.alerts([], [], prechecks) == []


async def test_every_node_shows_a_session_owned_by_another_and_acts_on_it(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 2, "--heartbeat", "0.5", "--lease-ttl", "3") as c:
        room = await c.create_room()
        peer = await c.peer(c.nodes[0], room, "m1", "member", "zhuzhou", 1)
        operators = [await connect_operator(node.base_url, {"key": c.api_key}) for node in c.nodes]
        try:
            for operator in operators:
                await eventually(
                    lambda o=operator: o.shows(room, "m1", _publishing),
                    "each node's control feed shows the participant measured by the owner",
                    within=30,
                )
            owners = {o.room(room)["owner"] for o in operators}
            feeds = {o.snapshots[-1]["node"] for o in operators}
            assert len(owners) == 1 and len(feeds) == 2  # one of them asked over the bus
            (owner,) = owners
            remote = next(o for o in operators if o.snapshots[-1]["node"] != owner)
            ack = await remote.call("reconnect_participant", {"room": room, "identity": "m1"})
            assert ack == {"ok": True}, ack
            await peer.wait_for(lambda: peer.media_restarts == 1)
            # Lowering a venue's quality goes over the bus to the owner as well.
            notices: list[dict[str, Any]] = []
            peer.signaling.on("video_quality", notices.append)
            ack = await remote.call(
                "venue_quality",
                {"room": room, "venue": "zhuzhou", "receive": "audio_only",
                 "send_max_bitrate": 200_000},
            )  # fmt: skip
            assert ack["ok"] is True and ack["participants"] == ["m1"], ack
            await peer.wait_for(lambda: any(n.get("capped") for n in notices))
            await eventually(
                lambda: (
                    remote.room(room).get("venue_quality", {}).get("zhuzhou")
                    == {"receive": "audio_only", "send_max_bitrate": 200_000}
                ),
                "the remote node's feed shows the cap the owner holds",
                within=20,
            )
        finally:
            for operator in operators:
                await operator.client.disconnect()
            await peer.close()


async def test_an_operator_stays_connected_past_the_join_timeout(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # Sockets that join no room are closed after `join_timeout`; an operator's is not.
    async with run_server(
        tmp_path / "data",
        free_port(),
        redis_url=redis_url,
        join_timeout_seconds=0.5,
        control_interval_seconds=0.2,
    ) as server:
        operator = await connect_operator(server.base_url, {"key": server.api_key})
        try:
            await eventually(lambda: bool(operator.snapshots), "a first snapshot")
            first = operator.snapshots[0]["at"]
            await eventually(
                lambda: operator.snapshots[-1]["at"] - first > 1.5,
                "snapshots still arriving three join timeouts later",
            )
            assert operator.client.connected
        finally:
            await operator.client.disconnect()


async def test_an_operator_link_sees_and_acts_on_its_own_session_only(
    fast_server: ServerHandle,
) -> None:
    server = fast_server
    mine = (await server.create_room())["id"]
    other = (await server.create_room())["id"]
    member = SessionPeer(server.base_url, await server.token(mine, "m1", "member", "zhuzhou"), 1)
    elsewhere = SessionPeer(
        server.base_url, await server.token(other, "m2", "member", "zhuzhou"), 2
    )
    body = {"identity": "ops", "name": "技术保障", "role": "operator", "venue": "hunan"}
    status, issued = await server.request("POST", f"/api/rooms/{mine}/tokens", body)
    assert status == 201, issued
    # The organizer hands the session's technical staff a link to its control room.
    assert "/control?token=" in issued["url"]
    operator = admin = None
    try:
        await member.join()
        await member.publish()
        await elsewhere.join()
        operator = await connect_operator(server.base_url, {"token": issued["token"]})
        admin = await connect_operator(server.base_url, {"key": server.api_key})
        await eventually(
            lambda: admin is not None and bool(admin.room(mine)) and bool(admin.room(other)),
            "the admin key's control room shows both sessions",
            within=20,
        )
        await eventually(
            lambda: operator is not None and operator.shows(mine, "m1", _publishing),
            "the operator sees its session's venue",
            within=20,
        )
        # Only its own session, and not the deployment's nodes.
        assert {r["id"] for s in operator.snapshots for r in s["rooms"]} == {mine}
        assert all(s["nodes"] == [] for s in operator.snapshots)

        ack = await operator.call("reconnect_participant", {"room": mine, "identity": "m1"})
        assert ack == {"ok": True}, ack
        await member.wait_for(lambda: member.media_restarts == 1)
        refused = await operator.call("reconnect_participant", {"room": other, "identity": "m2"})
        assert refused["error"]["code"] == "not_your_session", refused
        assert elsewhere.media_restarts == 0

        # The operator is staff, not a participant: not on the roster, cannot join.
        status, detail = await server.request("GET", f"/api/rooms/{mine}")
        assert status == 200 and "ops" not in {i["identity"] for i in detail["roster"]}
        with pytest.raises(SignalingError) as joined:
            await RoomClient(server.base_url, issued["token"]).connect()
        assert joined.value.code == "operator_token"
        # Nor does a participant's link open the control room.
        member_token = await server.token(mine, "m3", "member", "shifeng")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect_operator(server.base_url, {"token": member_token})
    finally:
        for watcher in (operator, admin):
            if watcher is not None:
                await watcher.client.disconnect()
        await member.close()
        await elsewhere.close()
