"""The room actor's order: one change at a time, identities take turns, upkeep goes first.

These drive a real RoomActor over a real OwnedRoom (media node included, unused);
only delivery and the write-behind are stand-ins that record what they are given,
because what is tested is the order the actor applies commands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from server.media import MediaNode
from server.rooms import acks
from server.rooms.actor import RoomActor
from server.rooms.commands import ClientCommand, LeaveRoom
from server.rooms.limits import LimitSettings
from server.rooms.models import Caller, NodeRef, Participant, Role, Room, TimelineEntry
from server.rooms.owned_room import OwnedRoom, OwnerSettings
from server.rooms.payloads import MediaState
from server.rooms.ports import SessionRef
from server.rooms.room_state import RoomState
from tests.helpers import ROOM_SPEC


class Delivered:
    """Delivery that records every broadcast (event, payload) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def broadcast(
        self, room_id: str, seq: int, event: str, payload: BaseModel, nodes: frozenset[str]
    ) -> None:
        self.events.append((event, payload))

    async def send(self, room_id: str, to: SessionRef, event: str, payload: BaseModel) -> None:
        self.events.append((event, payload))

    async def close(self, room_id: str, to: SessionRef, reason: str) -> None:
        self.events.append(("close", to))


class Written:
    """A write-behind that has always written everything."""

    def changed(self) -> None:
        pass

    def append(self, entry: TimelineEntry) -> None:
        pass

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def settled(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self, timeout: float) -> bool:
        return True

    async def close(self) -> None:
        pass


def _caller(identity: str) -> Caller:
    return Caller(
        identity=identity,
        name=identity,
        role=Role.MEMBER,
        venue="shifeng",
        session=f"s-{identity}",
        node="node-1",
    )


async def _actor(delivered: Delivered, identities: list[str]) -> RoomActor:
    room = Room.model_validate({**ROOM_SPEC, "id": "r1", "created_at": datetime.now(UTC)})
    state = RoomState(room)
    for identity in identities:
        caller = _caller(identity)
        state.participants[identity] = Participant(
            **caller.model_dump(exclude={"session", "node"}),
            session=caller.session,
            node=caller.node,
            joined_at=time.time(),
        )
    actor: RoomActor
    owned = OwnedRoom(
        state,
        node=NodeRef(id="node-1", url="http://127.0.0.1:1"),
        delivery=delivered,
        writer=Written(),
        media_node=MediaNode(),
        recorder=None,
        # Budgets out of the way: what is tested here is the order, not the limits.
        settings=OwnerSettings(limits=LimitSettings(media_state_rate=1000, media_state_burst=1000)),
        live_nodes=lambda: [],
        post=lambda command: actor.post(command),
    )
    actor = RoomActor(owned)
    actor.start()
    return actor


async def test_a_flooding_identity_delays_another_by_one_command_at_most() -> None:
    delivered = Delivered()
    actor = await _actor(delivered, ["flood", "victim"])
    flood = [
        actor.call(ClientCommand(_caller("flood"), "media_state", MediaState(
            audio_muted=i % 2 == 0, video_muted=False)))
        for i in range(30)
    ]  # fmt: skip
    victim = actor.call(
        ClientCommand(
            _caller("victim"), "media_state", MediaState(audio_muted=True, video_muted=True)
        )
    )
    results = await asyncio.gather(*flood, victim)
    assert all(acks.is_ok(r) for r in results)
    order = [p.identity for e, p in delivered.events if e == "participant_updated"]
    # The victim's change is applied second: after one flood command, not after thirty.
    assert order.index("victim") == 1, order
    await actor.stop()


async def test_a_leave_is_applied_after_the_same_identitys_earlier_commands() -> None:
    delivered = Delivered()
    actor = await _actor(delivered, ["m1"])
    update = actor.call(
        ClientCommand(_caller("m1"), "media_state", MediaState(audio_muted=True, video_muted=False))
    )
    leave = actor.call(LeaveRoom("m1", "s-m1", "left"))
    assert acks.is_ok(await update) and acks.is_ok(await leave)
    names = [e for e, _ in delivered.events]
    assert names.index("participant_updated") < names.index("participant_left")
    await actor.stop()


async def test_the_rooms_upkeep_goes_before_waiting_participants() -> None:
    delivered = Delivered()
    actor = await _actor(delivered, ["m1"])
    updates_before_upkeep: list[int] = []

    def updates() -> int:
        return sum(e == "participant_updated" for e, _ in delivered.events)

    async def upkeep(room: OwnedRoom) -> None:
        updates_before_upkeep.append(updates())

    waiting = [
        actor.call(ClientCommand(_caller("m1"), "media_state", MediaState(
            audio_muted=i % 2 == 0, video_muted=False)))
        for i in range(10)
    ]  # fmt: skip
    await asyncio.gather(*waiting, actor.run(upkeep))
    assert updates() == 10
    # Queued after ten participant commands, the upkeep ran before all but the first.
    assert updates_before_upkeep in ([0], [1]), updates_before_upkeep
    await actor.stop()


async def test_commands_after_stop_are_refused_as_moved() -> None:
    delivered = Delivered()
    actor = await _actor(delivered, ["m1"])
    await actor.stop()
    try:
        await actor.call(LeaveRoom("m1", "s-m1", "left"))
    except Exception as exc:
        assert type(exc).__name__ == "RoomMoved"
    else:
        raise AssertionError("a stopped actor accepted a command")
