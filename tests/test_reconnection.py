"""A participant whose connection drops is "reconnecting" to the others, not gone.

Real Socket.IO connections and real aiortc peers against a real server: a
member's socket is cut (`drop()`: the transport aborted, as a network failure
does); the host sees `participant_reconnecting`, then — once the member's
client has connected and joined again — `participant_reconnected`, with the
member's raised hand kept and no `participant_left`/`participant_joined` in
between (the timeline's `joined` for it is a reconnection to the attendance).
When the grace period ends first, that is the leave. A member whose
client rebuilds its peer connections (`media_restart`) is reconnecting until its
new publish connection is up, and its video reaches the host again. A
publisher whose packets stop arriving while its connection stays up is noticed
by the server itself: reconnecting until its packets flow again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack

from server.rooms.models import Participant
from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ServerHandle, run_server
from tests.session_peer import SessionPeer


def _events_about(client: RoomClient, identity: str, since: int = 0) -> list[str]:
    """The names of the participant events about `identity` the client received."""
    names = []
    for event, payload in client.received[since:]:
        if event.startswith("participant_") and _identity(payload) == identity:
            names.append(event)
    return names


def _identity(payload: Any) -> str | None:
    return payload.get("identity") if isinstance(payload, dict) else None


def _reconnecting(client: RoomClient, identity: str) -> str | None:
    participant: Participant | None = client.participants.get(identity)
    return participant.reconnecting if participant is not None else None


async def test_a_dropped_connection_is_reconnecting_then_back_not_left(
    server: ServerHandle,
) -> None:
    room = (await server.create_room())["id"]
    host = await server.client(room, "host", "host", "hunan")
    member = RoomClient(
        server.base_url, await server.token(room, "m1", "member", "zhuzhou"), reconnect=True
    )
    try:
        await member.connect()
        await member.raise_hand()
        await host.wait_for(lambda: host.live.queue == ["m1"])
        first_session = member.you.session
        since = len(host.received)
        timeline_before = len(host.timeline)

        await member.drop()
        await host.wait_for(lambda: _reconnecting(host, "m1") == "connection_lost")
        assert "m1" in host.participants, "a dropped connection is not a leave"
        # The member's client connects and joins again by itself, within the grace period.
        await member.wait_for(lambda: member.you.session != first_session)
        await host.wait_for(lambda: _reconnecting(host, "m1") is None)
        assert host.participants["m1"].session == member.you.session
        assert _events_about(host, "m1", since) == [
            "participant_reconnecting",
            "participant_reconnected",
        ]
        # The timeline has no leave; its `joined` is what attendance counts as a
        # reconnection (the presence unbroken).
        await host.wait_for(
            lambda: any(e.type == "joined" for e in host.timeline[timeline_before:])
        )
        later = host.timeline[timeline_before:]
        assert [e.type for e in later if e.type in ("left", "joined")] == ["joined"], later
        assert host.live.queue == ["m1"], "the raised hand is kept"
        assert member.participants["m1"].reconnecting is None
    finally:
        await member.close()
        await host.close()


async def test_the_grace_period_ending_is_a_leave(redis_url: str, tmp_path: Path) -> None:
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, reconnect_grace_seconds=1.0
    ) as server:
        room = (await server.create_room())["id"]
        host = await server.client(room, "host", "host", "hunan")
        member = await server.client(room, "m1", "member", "zhuzhou")
        since = len(host.received)
        await member.drop()
        await host.wait_for(lambda: "m1" not in host.participants)
        assert _events_about(host, "m1", since) == [
            "participant_reconnecting",
            "participant_left",
        ]
        left = next(p for e, p in host.received[since:] if e == "participant_left")
        assert left["reason"] == "connection_lost"
        await host.wait_for(lambda: any(e.type == "left" for e in host.timeline))
        # Coming back afterwards is joining anew.
        again = await server.client(room, "m1", "member", "zhuzhou")
        await host.wait_for(lambda: "m1" in host.participants)
        assert _events_about(host, "m1", since)[-1] == "participant_joined"
        await again.close()
        await host.close()


async def test_rebuilding_media_is_reconnecting_until_it_publishes_again(
    server: ServerHandle,
) -> None:
    room = (await server.create_room())["id"]
    host = SessionPeer(server.base_url, await server.token(room, "host", "host", "hunan"), 1)
    member = SessionPeer(server.base_url, await server.token(room, "m1", "member", "zhuzhou"), 2)
    try:
        for peer in (host, member):
            await peer.join()
            await peer.publish()
        await host.wait_for(lambda: host.frames_from("m1", "video") >= 5)
        watcher = host.signaling
        since = len(watcher.received)

        # The member's client rebuilds both connections, as the browser does after its
        # ICE failed: `media_restart`, then a new publish connection.
        await member._restart_media(tell_server=True)
        await host.wait_for(
            lambda: "participant_reconnected" in _events_about(watcher, "m1", since)
        )
        assert _events_about(watcher, "m1", since) == [
            "participant_reconnecting",
            "participant_reconnected",
        ]
        reconnecting = next(
            p for e, p in watcher.received[since:] if e == "participant_reconnecting"
        )
        assert reconnecting["reconnecting"] == "media"
        assert watcher.participants["m1"].reconnecting is None
        # Its video reaches the host again, on the new publish connection.
        await host.wait_for(lambda: host.frames_from("m1", "video") >= 5, timeout=20)
    finally:
        await member.close()
        await host.close()


class PausableTrack(MediaStreamTrack):
    """A track that stops producing while paused: the publisher's packets stop, its
    connection (ICE consent, DTLS) stays up — what a cut uplink looks like to the server
    before aiortc's 30 s consent check gives up."""

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = inner.kind
        self.inner = inner
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self) -> Any:
        await self.flowing.wait()
        return await self.inner.recv()


async def test_a_publisher_whose_packets_stop_is_reconnecting_until_they_flow(
    server: ServerHandle,
) -> None:
    room = (await server.create_room())["id"]
    host = await server.client(room, "host", "host", "hunan")
    member = SessionPeer(server.base_url, await server.token(room, "m1", "member", "zhuzhou"), 2)
    audio, video = PausableTrack(member.audio), PausableTrack(member.video)
    member.audio, member.video = audio, video  # type: ignore[assignment]
    try:
        await member.join()
        await member.publish()
        await host.wait_for(lambda: "m1" in host.participants)
        since = len(host.received)
        for track in (audio, video):
            track.flowing.clear()
        await host.wait_for(lambda: _reconnecting(host, "m1") == "media", timeout=30)
        for track in (audio, video):
            track.flowing.set()
        await host.wait_for(lambda: _reconnecting(host, "m1") is None, timeout=30)
        assert _events_about(host, "m1", since) == [
            "participant_reconnecting",
            "participant_reconnected",
        ]
    finally:
        await member.close()
        await host.close()


#: How long the stalled client's process stops: longer than python-socketio's client
#: waits for a ping to answer when the server's ping timeout is no longer than its
#: interval (max(interval, timeout) + 5 = 15 s), well inside the server's own
#: judgement (a ping sent 10 s after the last pong, unanswered for 20 s).
STALL_SECONDS = 18


async def test_a_client_stalled_for_a_while_keeps_its_place(server: ServerHandle) -> None:
    """A loaded client (a busy machine, a burst of events to parse) reads the server's
    pings late; within the server's timeout it is neither cut off nor shown as
    reconnecting, and goes on where it was."""
    room = (await server.create_room())["id"]
    host = await server.client(room, "host", "host", "hunan")
    member = await server.client(room, "m1", "member", "zhuzhou")
    try:
        await member.raise_hand()
        await host.wait_for(lambda: host.live.queue == ["m1"])
        since = len(host.received)
        # The whole client process stops, both clients in it: nothing is read or sent.
        time.sleep(STALL_SECONDS)  # noqa: ASYNC251 - the stall is the fault under test
        await member.lower_hand()
        await host.wait_for(lambda: host.live.queue == [])
        await member.raise_hand()
        await host.wait_for(lambda: host.live.queue == ["m1"])
        for client in (host, member):
            assert not client.disconnected.is_set()
            assert client.joins == 1, "the client had to connect again"
        assert _events_about(host, "m1", since) == [], "m1 was shown reconnecting or gone"
        status, detail = await server.request("GET", f"/api/rooms/{room}")
        assert status == 200, detail
        assert {p["identity"]: p["reconnecting"] for p in detail["participants"]} == {
            "host": None,
            "m1": None,
        }
    finally:
        await member.close()
        await host.close()
