"""TURN: each participant gets short-lived coturn credentials, and media gets through them.

Checked against a real coturn (`use-auth-secret`): the credentials Yitang makes
are accepted, expired or foreign ones are refused; a participant that may use
the relay only (a venue whose UDP is blocked) publishes and receives through it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
import socketio
from aioice import stun
from aioice.turn import create_turn_endpoint

from server.loadtest.clip import encode_audio, encode_video
from server.loadtest.participant import LoadParticipant
from server.turn_credentials import TurnSettings, check_ice_url, ice_servers, turn_credential
from signaling.client import RoomClient
from signaling.events import NAMESPACE
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, eventually
from tests.processes import server_process
from tests.turn_kit import coturn


async def _allocate(port: int, username: str, password: str, transport: str) -> None:
    """Allocate a relayed address on coturn with these credentials (raises if refused)."""
    relayed, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", port),
            username=username,
            password=password,
            transport=transport,
        ),
        timeout=20,
    )
    relayed.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_accepts_our_credentials_and_refuses_expired_or_forged(
    tmp_path: Path, transport: str
) -> None:
    async with coturn(tmp_path / "turn") as relay:
        username, password = turn_credential(relay.secret, "m1", int(time.time()) + 3600)
        await _allocate(relay.port, username, password, transport)

        expired = turn_credential(relay.secret, "m1", int(time.time()) - 60)
        with pytest.raises(stun.TransactionFailed) as refused:
            await _allocate(relay.port, *expired, transport)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401

        forged = turn_credential("another-secret", "m1", int(time.time()) + 3600)
        with pytest.raises(stun.TransactionFailed):
            await _allocate(relay.port, *forged, transport)


def test_ice_servers_follow_the_rest_api_form() -> None:
    settings = TurnSettings(
        urls=("stun:stun.example.org:3478", "turns:turn.example.org:443?transport=tcp"),
        secret="s3cret",
        ttl_seconds=3600,
    )
    servers, expires_at = ice_servers(settings, "m1", now=1_000_000)
    assert expires_at == 1_003_600
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    # base64(HMAC-SHA1("s3cret", "1003600:m1")), computed independently with openssl.
    assert servers[1] == {
        "urls": ["turns:turn.example.org:443?transport=tcp"],
        "username": "1003600:m1",
        "credential": "zvsThaFI3L2MGG1gZyo3WK96ZZw=",
    }
    assert ice_servers(TurnSettings(), "m1") == ([], None)
    for bad in (
        "http://turn.example.org",
        "turn:",
        "turn:host?transport=sctp",
        "turn:" + "a" * 300,
    ):
        with pytest.raises(ValueError, match=r"URL|transport"):
            check_ice_url(bad)
    with pytest.raises(ValueError, match="turn-secret"):
        TurnSettings(urls=("turn:turn.example.org",))


@pytest.mark.timeout(180)
async def test_a_venue_without_udp_joins_publishes_and_watches_through_the_relay(
    tmp_path: Path,
) -> None:
    async with (
        coturn(tmp_path / "turn") as relay,
        server_process(tmp_path / "data", free_port(), *relay.serve_args()) as server,
    ):
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{server.base_url}/api/rooms", json=ROOM_SPEC) as response:
                assert response.status == 201
                room_id = (await response.json())["id"]
            tokens = {}
            people = [("host", "host", "hunan"), ("m1", "member", "shifeng")]
            for identity, role, venue in [*people, ("o1", "observer", "national")]:
                body = {"identity": identity, "name": identity, "role": role, "venue": venue}
                async with http.post(
                    f"{server.base_url}/api/rooms/{room_id}/tokens", json=body
                ) as response:
                    assert response.status == 201
                    tokens[identity] = (await response.json())["token"]

        # Credentials go to participants only: a connection that has not joined gets none.
        raw = socketio.AsyncClient(reconnection=False)
        await raw.connect(
            server.base_url, namespaces=[NAMESPACE], auth={"token": tokens["host"]},
            transports=["websocket"],
        )  # fmt: skip
        ack = await raw.call("refresh_ice_servers", {}, namespace=NAMESPACE, timeout=10)
        assert ack["error"]["code"] == "not_joined"
        await raw.disconnect()

        # The join hands out the relay with a credential for this identity; it is renewable.
        probe = RoomClient(server.base_url, tokens["host"])
        await probe.connect()
        turn = probe.ice_servers[0]
        assert turn["urls"] == relay.urls()
        assert turn["username"].endswith(":host")
        fresh = await probe.call("refresh_ice_servers")
        assert fresh["ice_servers"][0]["urls"] == relay.urls()
        assert fresh["ice_servers_expire_at"] >= int(turn["username"].split(":")[0])
        await probe.close()

        # The county member may use the relay only: camera and microphone go through it,
        # and so does what the observer (relay only too) receives.
        loopback = ("127.0.0.1",)
        member = LoadParticipant(
            server.base_url, tokens["m1"], video=encode_video("vp8", 320, 240, 30, 300_000),
            audio=encode_audio(), codec="vp8", ice_addresses=loopback, relay_only=True,
        )  # fmt: skip
        observer = LoadParticipant(
            server.base_url, tokens["o1"], video=None, audio=None, codec="vp8",
            ice_addresses=loopback, relay_only=True,
        )  # fmt: skip
        try:
            await member.join()
            await observer.join()

            def watching() -> bool:
                kinds = {t.kind: t.frames for t in observer.tracks if t.publisher == "m1"}
                return kinds.get("video", 0) >= 30 and kinds.get("audio", 0) >= 50

            await eventually(watching, "the observer receives m1 through the relay", within=60)
        finally:
            await member.close()
            await observer.close()
        allocations = relay.log.read_text()
        assert ":m1" in allocations and ":o1" in allocations, "both allocated on coturn"
