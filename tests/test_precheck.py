"""The pre-session connection check against a real server, with aiortc clients and coturn.

A venue's staff open the join page and run the check: the server's probe peer
measures the round trip and loss of its own pings and the uplink bitrate it
receives, once directly and once through the TURN relay; the result is stored
for the room and identity of the token, and shown to the control room.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import socketio

from server.precheck import PrecheckSettings
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
        room_id, token = await _room_and_token(server)
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
