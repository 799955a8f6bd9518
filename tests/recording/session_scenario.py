"""A recorded session driven by real signaling clients, with the test's own clock of each step.

The host joins and starts recording; 陈静怡 (m1, county) and 李明 (m2, city)
join; 王芳 (m3, national) is invited but never comes. On agenda item 1 the host
gives m1 the floor for 1 s; when it expires the host gives her 2 s more (the
overrun), which also expire. m2 leaves and rejoins. On item 2 m2 speaks for 2 s
(expires) and m1 briefly (the host revokes). Chat is posted in between; m1
leaves; the host stops the recording.

Every time is taken from the test's clock when the client saw the step done
(an ack, or the event that reports it): no sleeping stands in for a step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from server.rooms.models import LiveState
from signaling.client import RoomClient
from tests.helpers import ServerHandle

CHAT_M1 = "我建议加快清水塘老工业区的搬迁改造进度"
CHAT_M2 = "Relocation funding should be published every quarter"
NAMES = {"host": "主持人甲", "m1": "陈静怡", "m2": "李明", "m3": "王芳"}


@dataclass
class Recorded:
    """What the scenario did, and when (seconds since the epoch, the test's clock)."""

    room_id: str
    recording_id: str
    at: dict[str, float] = field(default_factory=dict)


async def _floor_free(host: RoomClient, granted: LiveState) -> float:
    """When the host saw the floor free again after the grant that returned `granted`.

    Compared by version: the grant's own live_state broadcast may reach the host after
    its ack (broadcasts travel through Redis), so an older "floor free" does not count.
    """
    await host.wait_for(lambda: host.live.version > granted.version and host.live.floor is None)
    return time.time()


async def run_recorded_session(server: ServerHandle, room_id: str | None = None) -> Recorded:
    """Run the scenario (see the module docstring) and return the recording and its clock."""
    room = await server.create_room(**({"id": room_id} if room_id else {}))
    rid = room["id"]
    tokens = {
        "host": await server.token(rid, "host", "host", "hunan", name=NAMES["host"]),
        "m1": await server.token(rid, "m1", "member", "shifeng", name=NAMES["m1"]),
        "m2": await server.token(rid, "m2", "member", "zhuzhou", name=NAMES["m2"]),
        "m3": await server.token(rid, "m3", "member", "national", name=NAMES["m3"]),
    }
    at: dict[str, float] = {}
    host = RoomClient(server.base_url, tokens["host"])
    m1 = RoomClient(server.base_url, tokens["m1"])
    m2 = RoomClient(server.base_url, tokens["m2"])
    m2_again = RoomClient(server.base_url, tokens["m2"])
    try:
        await host.connect()
        status, body = await server.request("POST", f"/api/rooms/{rid}/recording/start")
        assert status == 201, body
        at["recording_start"] = time.time()
        recording_id = str(body["id"])
        await m1.connect()
        at["m1_join"] = time.time()
        await m2.connect()
        at["m2_join"] = time.time()

        await host.advance_agenda(1)
        at["item1"] = time.time()
        granted = await host.grant_floor("m1", time_limit_seconds=1)
        at["m1_grant"] = time.time()
        at["m1_expired"] = await _floor_free(host, granted)
        granted = await host.grant_floor("m1", time_limit_seconds=2)  # more time: the overrun
        at["m1_extension"] = time.time()
        await m1.chat(CHAT_M1)
        at["m1_chat"] = time.time()
        at["m1_extension_expired"] = await _floor_free(host, granted)

        await m2.close()
        await host.wait_for(lambda: "m2" not in host.participants)
        at["m2_leave"] = time.time()
        await m2_again.connect()
        at["m2_rejoin"] = time.time()

        await host.advance_agenda(2)
        at["item2"] = time.time()
        granted = await host.grant_floor("m2", time_limit_seconds=2)
        at["m2_grant"] = time.time()
        await m2_again.chat(CHAT_M2)
        at["m2_expired"] = await _floor_free(host, granted)
        await host.grant_floor("m1")
        at["m1_grant2"] = time.time()
        await host.revoke_floor()
        at["m1_revoked"] = time.time()

        await m1.close()
        await host.wait_for(lambda: "m1" not in host.participants)
        at["m1_leave"] = time.time()
        status, body = await server.request("POST", f"/api/rooms/{rid}/recording/stop")
        assert status == 200, body
        at["recording_stop"] = time.time()
    finally:
        for client in (m1, m2, m2_again, host):
            await client.close()
    return Recorded(rid, recording_id, at)
