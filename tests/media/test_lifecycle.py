"""Peer connections, tasks and queues are released when participants go."""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiortc import RTCPeerConnection
from media_testkit import RoomHarness, loopback_config

from server.media import MediaRoom, ParticipantMediaState


def _tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if not t.done()}


async def test_join_leave_churn_leaks_no_tasks_or_peer_connections(harness: RoomHarness) -> None:
    host = harness.client("host")
    await host.join()
    server_pcs: list[weakref.ref[RTCPeerConnection]] = []
    client_pcs: list[weakref.ref[RTCPeerConnection]] = []

    async def guest_round(i: int) -> None:
        pid = f"guest{i}"
        guest = harness.client(pid, width=64, height=48)
        await guest.join()
        await harness.wait_until(
            lambda: guest.frames_from("host", "video") >= 1 and host.frames_from(pid, "video") >= 1,
            f"{pid} and host to see each other",
        )
        server_pcs.extend(weakref.ref(pc) for pc in harness.room.peer_connections()[2:])
        client_pcs.extend(weakref.ref(pc) for pc in (guest.pub_pc, guest.sub_pc) if pc)
        await harness.room.remove_participant(pid)
        await guest.close()
        del harness.clients[pid]

    # Warm-up: after one guest, the host's own connections all exist and run.
    await guest_round(0)
    baseline = _tasks()
    for i in range(1, 21):
        await guest_round(i)

    assert harness.room.participant_ids == ["host"]
    await harness.wait_until(
        lambda: all(t.ended for t in host.received.values() if t.publisher_id != "host"),
        "every guest track to end at the host",
    )

    def host_client_task(task: asyncio.Task[object]) -> bool:
        # The host's own aiortc client keeps one RTCP task per receiver it ever had
        # until its peer connection closes: client behaviour, not a server leak.
        owner = getattr(task.get_coro(), "cr_frame", None)
        owner_self = owner.f_locals.get("self") if owner is not None else None
        assert host.sub_pc is not None
        return any(owner_self is t.receiver for t in host.sub_pc.getTransceivers())

    def settled() -> bool:
        gc.collect()
        current = set(harness.room.peer_connections())
        live_guest_pcs = [r for r in server_pcs if r() is not None and r() not in current]
        extra = [t for t in _tasks() - baseline if not host_client_task(t)]
        live_client_pcs = [r for r in client_pcs if r() is not None]
        state["left"] = (
            f"{len(live_guest_pcs)} server pcs, {len(live_client_pcs)} client pcs, "
            f"tasks: {sorted(t.get_coro().__qualname__ for t in extra)}"  # type: ignore[union-attr]
        )
        return not live_guest_pcs and not live_client_pcs and not extra

    state: dict[str, str] = {}
    try:
        await harness.wait_until(settled, "guest connections and tasks to be released", within=20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: left {state['left']}") from None
    # The host's subscribe connection stopped every guest sender; only m-lines remain.
    subscribe_pc = harness.room.peer_connections()[1]
    assert len(subscribe_pc.getTransceivers()) == 42
    assert all(t.direction == "inactive" for t in subscribe_pc.getTransceivers())


async def test_client_closing_releases_the_server_connections(harness: RoomHarness) -> None:
    alice = harness.client("alice")
    bob = harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(lambda: alice.frames_from("bob", "video") >= 3, "alice sees bob")
    # bob's browser goes away without a goodbye: its DTLS close reaches the server.
    await bob.close()
    await harness.wait_until(
        lambda: harness.room.connection_states("bob") == {"publish": "none", "subscribe": "none"},
        "bob's server connections to be released",
        within=5,
    )

    def states() -> set[tuple[str, str]]:
        return {
            (e.connection, e.state)
            for e in harness.events
            if isinstance(e, ParticipantMediaState) and e.participant_id == "bob"
        }

    await harness.wait_until(
        lambda: {("publish", "closed"), ("subscribe", "closed")} <= states(),
        "closed events for both of bob's connections",
    )
    await harness.wait_until(
        lambda: all(t.ended for t in alice.tracks_from("bob")), "bob's tracks to end at alice"
    )
    assert [t.participant_id for t in harness.room.tracks()] == ["alice", "alice"]
    # bob comes back on the same participant: a new publish offer and resubscribe.
    bob2 = harness.client("bob")
    await bob2.publish()
    await harness.room.resubscribe("bob")
    await harness.wait_until(
        lambda: bob2.frames_from("alice", "video") >= 3 and alice.frames_from("bob", "video") >= 3,
        "bob back in both directions",
    )


def _room_tasks(room_id: str) -> list[str]:
    return sorted(t.get_name() for t in _tasks() if t.get_name() == f"media-events-room {room_id}")


def _ticking(room: MediaRoom) -> bool:
    """Whether the event loop holds the room's tick (speaker, levels, uplinks): a timer
    still to come, or one that came due in this turn of the loop and waits to run."""
    loop = asyncio.get_running_loop()
    handles = [*loop._scheduled, *loop._ready]  # type: ignore[attr-defined]
    return any(h._callback == room._tick and not h.cancelled() for h in handles)


async def _use_and_close_room(harness: RoomHarness) -> weakref.ref[MediaRoom]:
    node, room = harness.node, harness.room
    alice = harness.client("alice")
    bob = harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(
        lambda: alice.frames_from("bob", "video") >= 3 and bob.frames_from("alice", "video") >= 3,
        "alice and bob to see each other",
    )
    assert _room_tasks("clinic-7") == ["media-events-room clinic-7"]
    assert _ticking(room)
    # The owner can tell when the room is empty; an empty room ticks no more.
    await room.remove_participant("bob")
    assert not room.empty
    await room.remove_participant("alice")
    assert room.empty
    assert not _ticking(room)
    await room.add_participant("carol", can_publish=False)  # the tick comes back
    assert _ticking(room)

    closing = asyncio.create_task(room.close())
    await harness.wait_until(lambda: room.closed, "close() to start")
    # Gone from the node as soon as close() starts: never handed out again.
    assert "clinic-7" not in node.rooms
    assert node.get_room("clinic-7") is None
    # Get-or-create on the id of a closed room makes a new room.
    fresh = node.room("clinic-7")
    assert fresh is not room
    assert not fresh.closed
    assert fresh.empty
    await closing
    assert node.rooms == {"clinic-7": fresh}  # the old room's close left it alone
    await fresh.close()
    assert node.rooms == {}
    harness.room = fresh
    for client in (alice, bob):
        await client.close()
    return weakref.ref(room)


async def test_closing_a_room_removes_it_from_the_node_and_leaves_no_task() -> None:
    baseline = _tasks()
    harness = RoomHarness(room_id="clinic-7")
    try:
        room_ref = await _use_and_close_room(harness)

        def settled() -> bool:
            gc.collect()
            return room_ref() is None and not (_tasks() - baseline)

        await harness.wait_until(settled, "the closed room and every task of it to be gone")
    finally:
        await harness.close()


async def test_the_last_room_closing_has_its_garbage_collected_while_no_room_is_open() -> None:
    """aiortc's objects hold reference cycles: a closed session's connections wait for a full
    collection, which stops the event loop for every live session (289 ms for a 36-person
    one). The node runs it when its last room has closed; with a room open, it does not."""
    harness = RoomHarness(loopback_config(idle_collection_delay=0.2), room_id="plenary")
    node, room = harness.node, harness.room
    gc.disable()  # only the node's own collection may free the cycles
    try:
        alice, bob = harness.client("alice"), harness.client("bob")
        await alice.join()
        await bob.join()
        await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 3, "bob to see alice")
        server_pcs = [weakref.ref(pc) for pc in room.peer_connections()]
        assert len(server_pcs) == 4
        for client in (alice, bob):
            await client.close()
        # Another room is open: closing this one schedules nothing.
        other = node.room("hearing")
        await room.close()
        assert not node.idle_collection_pending and node.idle_collections == 0
        # Without a collection, the closed room's connections are still there: cycles.
        assert all(ref() is not None for ref in server_pcs)
        # The last room closes: the garbage of both is collected.
        await other.close()
        assert node.idle_collection_pending
        await harness.wait_until(
            lambda: node.idle_collections == 1, "the node's collection after its last room"
        )
        assert [ref for ref in server_pcs if ref() is not None] == []
    finally:
        gc.enable()
        await harness.close()
