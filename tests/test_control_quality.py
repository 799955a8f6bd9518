"""The control room lowers a venue's quality (`venue_quality`) and lifts it again.

Through the real server with aiortc participants: the host and a Zhuzhou member
publish their cameras in two encodings (high and low); the operator caps what
Zhuzhou receives. Zhuzhou's receiver then gets the host (on everyone's stage)
in low quality, or no video at all, while the national venue keeps the high
encoding; lifting the cap brings the high encoding back. The capped participant
is told (`video_quality` with `capped`), a send cap reaches its camera as a
`publisher_hint`, and the control room's snapshots show the caps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio

from tests.conftest import free_port
from tests.helpers import ServerHandle, eventually, run_server
from tests.session_peer import SessionPeer
from tests.test_control_room import connect_operator
from tests.test_quality_tiers_session import HIGH, LOW, TwoEncodingPeer, size_from


@pytest.fixture
async def fast_server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    """A server pushing control snapshots every half second."""
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, control_interval_seconds=0.5
    ) as handle:
        yield handle


def _record(peer: SessionPeer, event: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    peer.signaling.on(event, seen.append)
    return seen


async def test_operator_caps_a_venue_to_low_then_audio_only_and_lifts_it(
    fast_server: ServerHandle,
) -> None:
    server = fast_server
    room = (await server.create_room())["id"]
    host = TwoEncodingPeer(server.base_url, await server.token(room, "host", "host", "hunan"), 1)
    county = SessionPeer(server.base_url, await server.token(room, "m1", "member", "zhuzhou"), 2)
    other = SessionPeer(server.base_url, await server.token(room, "m2", "member", "national"), 3)
    notices = _record(county, "video_quality")
    hints = _record(county, "publisher_hint")
    other_notices = _record(other, "video_quality")
    operator = await connect_operator(server.base_url, {"key": server.api_key})
    try:
        for peer in (host, county, other):
            await peer.join()
        await host.publish()
        await county.publish()
        # No floor: the host is on everyone's stage, in the high encoding.
        for peer in (county, other):
            await peer.wait_for(lambda p=peer: size_from(p, "host") == HIGH)

        # Zhuzhou's link is thin: at most the low encoding, its camera at 300 kbit/s.
        ack = await operator.call(
            "venue_quality",
            {"room": room, "venue": "zhuzhou", "receive": "reduced", "send_max_bitrate": 300_000},
        )
        assert ack["ok"] is True, ack
        assert ack["participants"] == ["m1"]
        await county.wait_for(lambda: size_from(county, "host") == LOW)
        await county.wait_for(lambda: any(n["level"] == "reduced" and n["capped"] for n in notices))
        await county.wait_for(lambda: {"max_bitrate": 300_000} in hints)
        # The national venue keeps the high encoding, and hears of no change.
        frames = other.frames_from("host", "video")
        await other.wait_for(lambda: other.frames_from("host", "video") >= frames + 30)
        assert size_from(other, "host") == HIGH
        assert not any(n.get("capped") for n in other_notices)
        # The control room shows the caps, on the venue and on its participant.
        await eventually(
            lambda: (
                operator.room(room).get("venue_quality", {}).get("zhuzhou")
                == {"receive": "reduced", "send_max_bitrate": 300_000}
            ),
            "the control room shows Zhuzhou's caps",
            within=10,
        )
        shown = operator.participant(room, "m1")
        assert shown is not None and shown["receive_cap"] == "reduced"
        assert shown["send_cap"] == 300_000

        # Audio only: Zhuzhou's video stops while the national venue's goes on.
        ack = await operator.call(
            "venue_quality", {"room": room, "venue": "zhuzhou", "receive": "audio_only"}
        )
        assert ack["ok"] is True, ack
        await county.wait_for(
            lambda: notices[-1]["level"] == "audio_only" and notices[-1]["capped"]
        )
        # Dropping the send cap lifts it on the camera (the uplink itself is clean).
        await county.wait_for(lambda: hints[-1] == {"max_bitrate": None})
        stopped_at = county.frames_from("host", "video")
        audio_at = county.frames_from("host", "audio")
        frames = other.frames_from("host", "video")
        await other.wait_for(lambda: other.frames_from("host", "video") >= frames + 60)
        assert county.frames_from("host", "video") <= stopped_at + 10  # in flight at most
        await county.wait_for(lambda: county.frames_from("host", "audio") >= audio_at + 20)

        # Lifted: the high encoding comes back, and the page hears it.
        ack = await operator.call("venue_quality", {"room": room, "venue": "zhuzhou"})
        assert ack["ok"] is True, ack
        await county.wait_for(
            lambda: (
                size_from(county, "host") == HIGH
                and county.frames_from("host", "video") >= stopped_at + 20
            )
        )
        assert notices[-1] == {"level": "full", "paused": 0, "capped": False}
        await eventually(
            lambda: (
                operator.room(room).get("venue_quality") == {}
                and (operator.participant(room, "m1") or {}).get("receive_cap") == "full"
            ),
            "the control room shows the caps lifted",
            within=10,
        )
    finally:
        await operator.client.disconnect()
        for peer in (host, county, other):
            await peer.close()


async def test_a_cap_holds_for_a_participant_joining_later(server: ServerHandle) -> None:
    room = (await server.create_room())["id"]
    host = TwoEncodingPeer(server.base_url, await server.token(room, "host", "host", "hunan"), 1)
    operator = await connect_operator(server.base_url, {"key": server.api_key})
    late: SessionPeer | None = None
    try:
        await host.join()
        await host.publish()
        ack = await operator.call(
            "venue_quality", {"room": room, "venue": "zhuzhou", "receive": "reduced"}
        )
        assert ack["ok"] is True and ack["participants"] == [], ack
        late = SessionPeer(server.base_url, await server.token(room, "m1", "member", "zhuzhou"), 2)
        notices = _record(late, "video_quality")
        await late.join()
        await late.wait_for(lambda: size_from(late, "host") == LOW)
        frames = late.frames_from("host", "video")
        await late.wait_for(lambda: late.frames_from("host", "video") >= frames + 30)
        assert size_from(late, "host") == LOW
        assert notices and notices[-1]["capped"] is True

        # The cap ends with the session: nothing of it is left, and no new one is taken.
        owned = server.owned_room(room)
        assert owned is not None and set(owned.media.venue_caps) == {"zhuzhou"}
        await host.signaling.end_session()
        await eventually(lambda: not owned.media.venue_caps, "the session's caps are gone")
        ack = await operator.call(
            "venue_quality", {"room": room, "venue": "zhuzhou", "receive": "reduced"}
        )
        assert ack["ok"] is False, ack
        assert ack["error"]["code"] in ("session_ended", "room_not_live"), ack
    finally:
        await operator.client.disconnect()
        for peer in (host, late):
            if peer is not None:
                await peer.close()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"venue": "nowhere", "receive": "reduced"}, "venue_not_found"),
        ({"venue": "zhuzhou", "receive": "best"}, "invalid_payload"),
        ({"venue": "zhuzhou", "send_max_bitrate": 5}, "invalid_payload"),
        ({"venue": "zhuzhou", "send_max_bitrate": True}, "invalid_payload"),
        ({"venue": "zhuzhou", "send_max_bitrate": "300000"}, "invalid_payload"),
        ({"venue": "x" * 500}, "invalid_payload"),
        ({"venue": "zhuzhou", "extra": 1}, "invalid_payload"),
    ],
)
async def test_bad_venue_quality_actions_are_refused(
    server: ServerHandle, payload: dict[str, Any], code: str
) -> None:
    room = (await server.create_room())["id"]
    host = SessionPeer(server.base_url, await server.token(room, "host", "host", "hunan"), 1)
    operator = await connect_operator(server.base_url, {"key": server.api_key})
    try:
        await host.join()
        ack = await operator.call("venue_quality", {"room": room, **payload})
        assert ack["ok"] is False and ack["error"]["code"] == code, ack
    finally:
        await operator.client.disconnect()
        await host.close()


async def test_a_participant_cannot_lower_a_venues_quality(server: ServerHandle) -> None:
    room = (await server.create_room())["id"]
    host = SessionPeer(server.base_url, await server.token(room, "host", "host", "hunan"), 1)
    try:
        await host.join()
        # Not on the participants' namespace, even for the host ...
        ack = await host.signaling.emit_raw(
            "venue_quality", {"room": room, "venue": "zhuzhou", "receive": "audio_only"}
        )
        assert ack["ok"] is False, ack
        # ... and the control room takes no participant's token instead of the key.
        for auth in ({"key": host.signaling.token}, {"token": host.signaling.token}):
            with pytest.raises(socketio.exceptions.ConnectionError):
                await connect_operator(server.base_url, auth)
    finally:
        await host.close()
