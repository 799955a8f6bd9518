"""The pre-session connection check against a real server, with aiortc clients and coturn.

A venue's staff open the join page and run the check: the server's probe peer
measures the round trip and loss of its own pings and the uplink bitrate it
receives, once directly and once through the TURN relay; the result is stored
for the room and identity of the token, and shown to the control room.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio
from aiortc import RTCPeerConnection

from server import appkeys
from server.media.aiortc_internals import gather_only_on
from server.precheck import PrecheckSettings
from server.precheck.models import LegResult
from server.precheck.probe import CONTROL_LABEL, DATA_LABEL
from server.precheck.verdict import leg_verdict, overall
from server.turn_credentials import TurnSettings
from tests.conftest import free_port
from tests.helpers import ServerHandle, eventually, run_server
from tests.lossy_relay import lossy_relay
from tests.precheck_client import ProbeClient
from tests.turn_kit import coturn

#: A short check, so that the tests stay short: 20 pings, one second of uplink.
QUICK = PrecheckSettings(pings=20, upload_seconds=1.0, upload_kbps=400)


async def _room_and_token(server: ServerHandle, identity: str = "m1") -> tuple[str, str]:
    room = await server.create_room()
    return room["id"], await server.token(room["id"], identity, "member", "shifeng")


async def test_direct_leg_reports_round_trip_loss_and_uplink(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(tmp_path / "data", free_port(), redis_url, precheck=QUICK) as server:
        _, token = await _room_and_token(server)
        client = ProbeClient(server.base_url, token)
        config = await client.config(server.http)
        assert config["relay"] is False and config["ice_servers"] == []
        assert config["venue_name"] == "石峰区政协会场" and config["last"] is None

        message = await client.run(server.http, "direct")
        result = message["result"]
        assert result["leg"] == "direct" and result["connected"] is True
        assert result["pings_sent"] == 20 == result["pings_answered"] == client.pings_seen
        assert result["loss"] == 0.0
        assert 0 < result["rtt_ms_median"] <= result["rtt_ms_p95"]
        # What arrived of the uplink probe, counted by the server (never more than was sent).
        assert 0 < result["uplink_kbps"] <= client.chunks_sent * 1000 * 8 / 1000 / 1.0
        assert result["candidate"] in ("host", "prflx")
        assert message["overall"]["verdict"] == result["verdict"]

        # Stored for this room and identity: the next config call shows it.
        last = (await client.config(server.http))["last"]
        assert last["identity"] == "m1" and last["venue"] == "shifeng"
        assert last["legs"]["direct"]["pings_answered"] == 20
        # The probe peer is gone once it has reported.
        service = server.app[appkeys.PRECHECK]
        await eventually(lambda: service.running == 0, "the probe peer closed")


async def test_unanswered_pings_are_loss_and_a_poor_verdict(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(tmp_path / "data", free_port(), redis_url, precheck=QUICK) as server:
        _, token = await _room_and_token(server)
        # A link that loses every fourth ping on its way (or its echo on the way back).
        client = ProbeClient(server.base_url, token, echo=lambda seq: seq % 4 != 0)
        result = (await client.run(server.http, "direct"))["result"]
        assert result["pings_sent"] == 20 and result["pings_answered"] == 15
        assert result["loss"] == 0.25
        assert result["verdict"] == "poor" and "high_loss" in result["reasons"]


@pytest.mark.timeout(180)
async def test_relay_leg_goes_through_turn_and_measures_a_lossy_link(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with (
        coturn(tmp_path / "turn") as turn,
        lossy_relay(("127.0.0.1", turn.port)) as lossy,
        run_server(
            tmp_path / "data", free_port(), redis_url, precheck=QUICK,
            turn=TurnSettings(urls=(f"turn:127.0.0.1:{lossy.port}?transport=udp",),
                              secret=turn.secret),
        ) as server,
    ):  # fmt: skip
        _room_id, token = await _room_and_token(server)
        client = ProbeClient(server.base_url, token)
        config = await client.config(server.http)
        assert config["relay"] is True
        assert config["ice_servers"][0]["username"].endswith(":m1")

        direct = (await client.run(server.http, "direct"))["result"]
        assert direct["connected"] and direct["loss"] == 0.0
        relayed = await client.run(server.http, "relay", ice_servers=config["ice_servers"])
        assert relayed["result"]["candidate"] == "relay" and relayed["result"]["loss"] == 0.0
        assert lossy.passed > 0  # it did go through the relay

        # Now the venue's link to the relay drops a fifth of the datagrams both ways.
        lossy_client = ProbeClient(
            server.base_url, token, on_open=lambda: setattr(lossy, "loss", 0.2)
        )
        lossy_run = await lossy_client.run(server.http, "relay", ice_servers=config["ice_servers"])
        result = lossy_run["result"]
        assert result["connected"] and result["candidate"] == "relay"
        assert result["loss"] > 0.05 and "high_loss" in result["reasons"]
        assert result["verdict"] == "poor"
        # Both legs are stored: direct was fine, so the venue's overall verdict is direct's.
        last = (await client.config(server.http))["last"]
        assert set(last["legs"]) == {"direct", "relay"}
        assert last["legs"]["relay"]["loss"] == result["loss"]


@pytest.mark.timeout(180)
async def test_udp_blocked_venue_is_told_it_will_use_turn(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # The server accepts nothing but what comes out of the TURN relay (127.0.0.2): to it,
    # the venue's direct path is blocked, as a firewall dropping UDP would make it.
    blocked = PrecheckSettings(pings=20, upload_seconds=1.0, upload_kbps=400, connect_timeout=3)
    async with (
        coturn(tmp_path / "turn", relay_ip="127.0.0.2") as turn,
        run_server(
            tmp_path / "data", free_port(), redis_url, precheck=blocked,
            turn=TurnSettings(urls=tuple(turn.urls()), secret=turn.secret),
            ice_remote_allow=(ipaddress.ip_network("127.0.0.2/32"),),
        ) as server,
    ):  # fmt: skip
        room_id, token = await _room_and_token(server)
        client = ProbeClient(server.base_url, token)
        config = await client.config(server.http)
        direct = await client.run(server.http, "direct", connect_within=6.0)
        assert direct == {"type": "not_connected"}
        relayed = await client.run(server.http, "relay", ice_servers=config["ice_servers"])
        assert relayed["result"]["connected"] and relayed["result"]["candidate"] == "relay"
        results = server.app[appkeys.PRECHECK].results

        async def both_stored() -> bool:
            entry = await results.identity(room_id, "m1")
            return entry is not None and set(entry["legs"]) == {"direct", "relay"}

        await eventually(both_stored, "both legs stored", within=15)
        last = (await client.config(server.http))["last"]
        assert last["legs"]["direct"]["connected"] is False
        assert last["overall"]["verdict"] == "usable"
        assert last["overall"]["reasons"][0] == "udp_blocked"


async def test_a_leg_that_never_connects_is_stored_as_failed(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    quick_fail = PrecheckSettings(connect_timeout=1.0, max_seconds=5.0)
    async with run_server(tmp_path / "data", free_port(), redis_url, precheck=quick_fail) as server:
        room_id, token = await _room_and_token(server)
        # An offer whose sender never answers checks (UDP blocked on the way out).
        status, answer = await _post_probe(server, token, "direct", await _silent_offer())
        assert status == 200 and answer["sdp"].startswith("v=0")

        results = server.app[appkeys.PRECHECK].results

        async def stored() -> bool:
            return await results.identity(room_id, "m1") is not None

        await eventually(stored, "the failed leg is stored", within=15)
        last = (await ProbeClient(server.base_url, token).config(server.http))["last"]
        assert last is not None
        leg = last["legs"]["direct"]
        assert leg["connected"] is False and leg["reasons"] == ["no_connection"]
        # Without a TURN relay on this server, there is no way in for this venue.
        assert last["overall"] == {"verdict": "poor", "reasons": ["udp_blocked_no_turn"]}
        assert server.app[appkeys.PRECHECK].running == 0


async def test_a_token_stores_results_for_its_own_room_only(
    server: ServerHandle, redis_client: aioredis.Redis
) -> None:
    room_a = (await server.create_room())["id"]
    room_b = (await server.create_room())["id"]
    token_b = await server.token(room_b, "m1", "member", "shifeng")
    # The room comes from the token: naming another room in the body is refused.
    status, body = await _post_probe(server, token_b, "direct", "v=0\r\n", room=room_a)
    assert status == 422 and body["error"]["code"] == "invalid_request"

    await ProbeClient(server.base_url, token_b).run(server.http, "direct")
    results = server.app[appkeys.PRECHECK].results
    stored = await results.rooms(limit=10)
    assert set(stored) == {room_b}
    assert await results.identity(room_a, "m1") is None
    assert (await results.identity(room_b, "m1"))["legs"]["direct"]["connected"] is True


async def test_viewer_and_operator_tokens_have_no_connection_to_check(server: ServerHandle) -> None:
    # A viewer watches the HLS broadcast; its token opens no WebRTC path, so no probe.
    room_id = (await server.create_room(broadcast="token"))["id"]
    viewer = await server.token(room_id, "v1", "viewer", "zhuzhou")
    status, body = await _post_probe(server, viewer, "direct", await _silent_offer())
    assert (status, body["error"]["code"]) == (403, "viewer_token"), body
    # Nor does an operator's (the session's technical staff watch it from the control room).
    operator = await server.token(room_id, "ops", "operator", "hunan")
    status, body = await _post_probe(server, operator, "direct", await _silent_offer())
    assert (status, body["error"]["code"]) == (403, "operator_token"), body
    assert server.app[appkeys.PRECHECK].running == 0


async def test_limits_are_refused_with_clear_errors(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    tight = PrecheckSettings(concurrency=2, identity_burst=2, connect_timeout=10.0)
    async with run_server(tmp_path / "data", free_port(), redis_url, precheck=tight) as server:
        room_id = (await server.create_room())["id"]
        tokens = [await server.token(room_id, f"m{i}", "member", "shifeng") for i in range(3)]
        offer = await _silent_offer()

        for token, bad, code, http_status in [
            ("garbage", offer, "token_invalid", 401),
            (tokens[0], "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "bad_sdp", 422),
            (tokens[0], "x" * 20_000, "invalid_request", 422),
        ]:
            status, body = await _post_probe(server, token, "direct", bad)
            assert (status, body["error"]["code"]) == (http_status, code), body
        status, body = await _post_probe(server, tokens[0], "relay", offer)
        assert (status, body["error"]["code"]) == (409, "precheck_no_turn")
        assert "TURN" in body["error"]["message"]

        # Two probes waiting for their browsers fill this node; a third is told to wait.
        for token in tokens[:2]:
            status, _ = await _post_probe(server, token, "direct", await _silent_offer())
            assert status == 200
        status, body = await _post_probe(server, tokens[2], "direct", offer)
        assert (status, body["error"]["code"]) == (503, "precheck_busy")
        # One identity may not start probes without end (its burst was spent above).
        status, body = await _post_probe(server, tokens[0], "direct", offer)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        await server.app[appkeys.PRECHECK].close()
        assert server.app[appkeys.PRECHECK].running == 0


async def test_control_room_sees_checks_before_the_session_starts(
    server: ServerHandle, redis_client: aioredis.Redis
) -> None:
    room_id, token = await _room_and_token(server)
    operator = socketio.AsyncClient(reconnection=False)
    snapshots: list[dict[str, Any]] = []
    pushed: list[dict[str, Any]] = []
    operator.on("control_snapshot", snapshots.append, namespace="/control")
    operator.on("precheck_result", pushed.append, namespace="/control")
    await operator.connect(
        server.base_url, namespaces=["/control"], auth={"key": server.api_key},
        transports=["websocket"],
    )  # fmt: skip
    try:
        await eventually(lambda: bool(snapshots), "a first snapshot")
        assert snapshots[-1]["prechecks"] == [] and snapshots[-1]["rooms"] == []

        await ProbeClient(server.base_url, token).run(server.http, "direct")
        # Pushed as it ends, not at the next snapshot...
        await eventually(lambda: bool(pushed), "the check pushed to the operator")
        assert pushed[0]["room"] == room_id
        assert pushed[0]["check"]["identity"] == "m1"
        assert pushed[0]["check"]["overall"]["verdict"] in ("good", "usable", "poor")
        # ... and in every snapshot after, although the session has not started.
        await eventually(lambda: bool(snapshots[-1]["prechecks"]), "the check in a snapshot")
        (room,) = snapshots[-1]["prechecks"]
        assert room["room"] == room_id and snapshots[-1]["rooms"] == []
        assert {v["id"] for v in room["venues"]} >= {"shifeng"}
        assert room["checks"][0]["legs"]["direct"]["pings_answered"] > 0
    finally:
        await operator.disconnect()


async def test_a_poor_check_raises_a_control_room_alert_until_a_good_one(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url, precheck=QUICK, control_interval_seconds=0.5
    ) as server:
        room_id, token = await _room_and_token(server)
        operator = socketio.AsyncClient(reconnection=False)
        snapshots: list[dict[str, Any]] = []
        operator.on("control_snapshot", snapshots.append, namespace="/control")
        await operator.connect(
            server.base_url, namespaces=["/control"], auth={"key": server.api_key},
            transports=["websocket"],
        )  # fmt: skip

        def precheck_alerts() -> list[dict[str, Any]]:
            alerts = snapshots[-1]["alerts"] if snapshots else []
            return [a for a in alerts if a["kind"] == "precheck"]

        try:
            await eventually(lambda: bool(snapshots), "a first snapshot")
            assert precheck_alerts() == []
            # The venue's link loses every fourth ping: a poor check, before the session.
            lossy = ProbeClient(server.base_url, token, echo=lambda seq: seq % 4 != 0)
            assert (await lossy.run(server.http, "direct"))["overall"]["verdict"] == "poor"
            await eventually(lambda: bool(precheck_alerts()), "the venue's alert")
            (alert,) = precheck_alerts()
            assert (alert["room"], alert["venue"], alert["identity"]) == (room_id, "shifeng", "m1")
            assert "high_loss" in alert["reasons"]
            # The staff fix their link and check again: the alert is gone.
            good = await ProbeClient(server.base_url, token).run(server.http, "direct")
            assert good["overall"]["verdict"] != "poor"
            await eventually(lambda: not precheck_alerts(), "the alert cleared")
        finally:
            await operator.disconnect()


# --- helpers ------------------------------------------------------------------------------


async def _post_probe(
    server: ServerHandle, token: str, leg: str, sdp: str, **extra: Any
) -> tuple[int, Any]:
    async with server.http.post(
        f"{server.base_url}/api/precheck", json={"token": token, "leg": leg, "sdp": sdp, **extra}
    ) as response:
        return response.status, await response.json()


async def _silent_offer() -> str:
    """A real probe offer whose peer is closed at once: nothing will answer the server."""
    pc = RTCPeerConnection()
    pc.createDataChannel(CONTROL_LABEL)
    pc.createDataChannel(DATA_LABEL, ordered=False, maxRetransmits=0)
    with gather_only_on(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


def test_verdicts_in_plain_words() -> None:
    def leg(name: str, connected: bool, verdict: str = "good", *reasons: str) -> LegResult:
        return LegResult(
            leg=name, connected=connected, uplink_target_kbps=1500, verdict=verdict,
            reasons=list(reasons), at=0.0,
        )  # type: ignore[arg-type]  # fmt: skip

    good, failed = leg("direct", True), leg("direct", False, "poor", "no_connection")
    relay_ok, relay_failed = leg("relay", True), leg("relay", False, "poor", "no_connection")
    assert overall(good, relay_ok, turn_configured=True).verdict == "good"
    assert overall(good, relay_failed, turn_configured=True).reasons == ["relay_failed"]
    # UDP blocked: will use TURN.
    assert overall(failed, relay_ok, turn_configured=True).model_dump() == {
        "verdict": "usable", "reasons": ["udp_blocked"],
    }  # fmt: skip
    assert overall(failed, None, turn_configured=False).reasons == ["udp_blocked_no_turn"]
    assert overall(failed, relay_failed, turn_configured=True).reasons == ["unreachable"]

    def measure(loss: float, p95: float, kbps: float) -> tuple[str, list[str]]:
        return leg_verdict(
            connected=True, loss=loss, rtt_ms_p95=p95, uplink_kbps=kbps, uplink_target_kbps=1000
        )

    assert measure(0.0, 30, 990) == ("good", [])
    assert measure(0.02, 30, 990) == ("usable", ["some_loss"])
    assert measure(0.0, 250, 700) == ("usable", ["raised_rtt", "limited_uplink"])
    assert measure(0.1, 500, 100) == ("poor", ["high_loss", "high_rtt", "slow_uplink"])
