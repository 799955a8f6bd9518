"""Floor control: queue order, grants, revocation, timed floors, agenda — as participants see it."""

from __future__ import annotations

import time

import pytest

from signaling.client import RoomClient, SignalingError
from tests.helpers import ServerHandle


async def _room_with(
    server: ServerHandle, *members: tuple[str, str]
) -> tuple[str, RoomClient, list[RoomClient]]:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    clients = [
        await server.client(room["id"], identity, "member", venue) for identity, venue in members
    ]
    return room["id"], host, clients


async def _close(*clients: RoomClient) -> None:
    for client in clients:
        await client.close()


async def test_queue_keeps_the_order_hands_were_raised(server: ServerHandle) -> None:
    _, host, (a, b, c) = await _room_with(
        server, ("m1", "national"), ("m2", "zhuzhou"), ("m3", "shifeng")
    )
    await b.raise_hand()
    await c.raise_hand()
    await a.raise_hand()
    await b.raise_hand()  # raising again keeps the original place
    await host.wait_for(lambda: host.live.queue == ["m2", "m3", "m1"])
    await a.lower_hand()
    await c.wait_for(lambda: c.live.queue == ["m2", "m3"])
    hands = [e.data["identity"] for e in host.timeline if e.type == "hand_raised"]
    assert hands == ["m2", "m3", "m1"]
    await _close(host, a, b, c)


async def test_next_speaker_grant_and_revoke_reach_everyone(server: ServerHandle) -> None:
    _, host, (a, b) = await _room_with(server, ("m1", "national"), ("m2", "shifeng"))
    await b.raise_hand()
    await a.raise_hand()
    live = await host.next_speaker()
    assert live.floor is not None and live.floor.identity == "m2"
    assert live.queue == ["m1"]
    for client in (host, a, b):
        await client.wait_for(
            lambda c=client: c.live.floor is not None and c.live.floor.identity == "m2"
        )
    await host.grant_floor("m1")
    await a.wait_for(
        lambda: a.live.floor is not None and a.live.floor.identity == "m1" and a.live.queue == []
    )
    await host.revoke_floor()
    for client in (host, a, b):
        await client.wait_for(lambda c=client: c.live.floor is None)
    kinds = [e.type for e in host.timeline if e.type.startswith("floor")]
    assert kinds == ["floor_granted", "floor_granted", "floor_revoked"]
    with pytest.raises(SignalingError) as refused:
        await host.next_speaker()
    assert refused.value.code == "queue_empty"
    await _close(host, a, b)


async def test_next_speaker_skips_those_who_left(server: ServerHandle) -> None:
    _, host, (a, b) = await _room_with(server, ("m1", "national"), ("m2", "shifeng"))
    await a.raise_hand()
    await b.raise_hand()
    await a.close()
    await host.wait_for(lambda: host.live.queue == ["m2"])
    live = await host.next_speaker()
    assert live.floor is not None and live.floor.identity == "m2"
    await _close(host, b)


async def test_speaker_may_yield_but_not_take_others_floor(server: ServerHandle) -> None:
    _, host, (a, b) = await _room_with(server, ("m1", "national"), ("m2", "shifeng"))
    await host.grant_floor("m1")
    with pytest.raises(SignalingError) as refused:
        await b.revoke_floor()
    assert refused.value.code == "host_only"
    with pytest.raises(SignalingError) as refused:
        await a.raise_hand()
    assert refused.value.code == "already_has_floor"
    await a.revoke_floor()
    await b.wait_for(lambda: b.live.floor is None)
    await _close(host, a, b)


async def test_timed_floor_returns_to_the_host_when_time_is_up(server: ServerHandle) -> None:
    _, host, (a,) = await _room_with(server, ("m1", "zhuzhou"))
    await a.raise_hand()
    started = time.monotonic()
    live = await host.next_speaker(time_limit_seconds=1)
    assert live.floor is not None and live.floor.deadline is not None
    assert live.floor.deadline - live.floor.granted_at == pytest.approx(1000, abs=1)
    await a.wait_for(lambda: a.live.floor is None, timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.9, "the floor must not be taken back before its time"
    await host.wait_for(lambda: any(e.type == "floor_expired" for e in host.timeline))
    expired = next(e for e in host.timeline if e.type == "floor_expired")
    assert expired.data["identity"] == "m1"
    await _close(host, a)


async def test_expiry_of_an_old_grant_never_revokes_a_newer_one(server: ServerHandle) -> None:
    _, host, (a, b) = await _room_with(server, ("m1", "zhuzhou"), ("m2", "national"))
    await host.grant_floor("m1", time_limit_seconds=1)
    second = await host.grant_floor("m2", time_limit_seconds=2)
    assert second.floor is not None
    await host.wait_for(lambda: any(e.type == "floor_expired" for e in host.timeline), timeout=6)
    expiries = [e for e in host.timeline if e.type == "floor_expired"]
    # Only the second grant expired, and not before its own two seconds.
    assert [e.data["identity"] for e in expiries] == ["m2"]
    assert expiries[0].ts >= second.floor.granted_at + 2000 - 5
    await _close(host, a, b)


async def test_speaker_leaving_releases_the_floor(server: ServerHandle) -> None:
    _, host, (a,) = await _room_with(server, ("m1", "zhuzhou"))
    await host.grant_floor("m1")
    await a.close()
    await host.wait_for(lambda: host.live.floor is None)
    await host.close()


async def test_agenda_advances_and_is_bounded(server: ServerHandle) -> None:
    _, host, (a,) = await _room_with(server, ("m1", "zhuzhou"))
    await host.advance_agenda()
    await a.wait_for(lambda: a.live.agenda_index == 1)
    await host.advance_agenda(index=2)
    await a.wait_for(lambda: a.live.agenda_index == 2)
    with pytest.raises(SignalingError) as refused:
        await host.advance_agenda()
    assert refused.value.code == "agenda_out_of_range"
    titles = [e.data["title"] for e in a.timeline if e.type == "agenda_advanced"]
    assert titles == ["情况通报", "协商发言"]
    await _close(host, a)


async def test_host_can_skip_someone_in_the_queue(server: ServerHandle) -> None:
    _, host, (a, b) = await _room_with(server, ("m1", "zhuzhou"), ("m2", "national"))
    await a.raise_hand()
    await b.raise_hand()
    await host.lower_hand("m1")
    await b.wait_for(lambda: b.live.queue == ["m2"])
    await _close(host, a, b)
