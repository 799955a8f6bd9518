"""Screen sharing's rules, on the server: who may share, who may stop it, and that a
member's share ends with their turn (a host's does not). The media part — a third track
seen in every spotlight and recorded — is shown in tests/browser/test_browser_screen_share.py."""

from __future__ import annotations

import pytest

from server.rooms import floor
from server.rooms.errors import Conflict
from server.rooms.models import LiveState, ScreenShare
from signaling.client import SignalingError
from tests.helpers import ServerHandle


def _share(identity: str, by_host: bool = False) -> ScreenShare:
    return ScreenShare(
        identity=identity, track=f"{identity}-video-9", by_host=by_host, started_at=0
    )


def test_a_members_share_follows_their_turn_and_a_hosts_does_not() -> None:
    live = floor.grant(LiveState(status="live"), "m1", 0, None, "g1")
    live = floor.share_screen(live, _share("m1"))
    assert floor.grant(live, "m2", 0, None, "g2").screen is None
    assert floor.revoke(live).screen is None
    assert floor.expire(live, "g1").screen is None
    assert floor.forget(live, "m1").screen is None
    assert floor.grant(live, "m1", 0, 60, "g3").screen is not None  # still their turn
    hosted = floor.share_screen(LiveState(status="live"), _share("host", by_host=True))
    assert floor.grant(hosted, "m2", 0, None, "g4").screen is not None
    with pytest.raises(Conflict) as busy:
        floor.share_screen(hosted, _share("m2"))
    assert busy.value.code == "screen_busy"
    with pytest.raises(Conflict) as not_holder:
        floor.share_screen(LiveState(status="live"), _share("m2"))
    assert not_holder.value.code == "not_floor_holder"


async def test_who_may_share_and_stop(server: ServerHandle) -> None:
    room = await server.create_room()
    rid = room["id"]
    host = await server.client(rid, "host", "host", "hunan")
    member = await server.client(rid, "m1", "member", "zhuzhou")
    observer = await server.client(rid, "obs", "observer", "national")
    for client, code in (
        (member, "not_floor_holder"),
        (observer, "publish_forbidden"),
        (host, "no_screen_track"),  # nothing published: nothing to show
    ):
        with pytest.raises(SignalingError) as refused:
            await client.call("start_screen_share")
        assert refused.value.code == code
    with pytest.raises(SignalingError) as refused:
        await member.call("stop_screen_share")
    assert refused.value.code == "not_sharing"
    with pytest.raises(SignalingError) as refused:
        await member.call("start_screen_share", {"track": "x"})
    assert refused.value.code == "invalid_payload"
    for client in (host, member, observer):
        await client.close()
