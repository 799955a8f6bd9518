"""BroadcastService: the live broadcasts of the rooms this node owns.

A small loop (every ``interval`` seconds) looks at each owned room: when its
``broadcast`` is on and its session is live, the room gets a worker
(:class:`~server.broadcast.supervisor.WorkerSupervisor`) and a feed of the
tracks the programme needs; the programme (who is shown, the host, the agenda
item, the gallery item on screen, pause) is recomputed and sent when it
changes, and written as ``programme.json`` beside the playlist. When the
session ends the worker closes the playlist; when the room leaves this node
(idle, hand-over, shutdown) its broadcast files go too, and the next owner
starts its own broadcast.

Each node writes under a directory of its own (``root``: the data directory's
``broadcast/<node id>``), so nodes sharing a data directory never touch each
other's files; where a room's broadcast is gets published in Redis
(:mod:`server.broadcast.locator`) so that every node can serve it.

Reading the owned room between its actor's commands is safe: this loop runs
on the same event loop and reads without awaiting in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.cluster.directory import RoomDirectory
from server.media import MediaNode, TrackInfo
from server.rooms.models import Participant, Role
from server.rooms.owned_room import OwnedRoom

from . import wire
from .feed import BroadcastFeed
from .locator import BroadcastLocation, BroadcastLocator, new_origin, write_origin
from .programme import Programme, SlotRole, Speaker, TrackSlot
from .supervisor import WorkerSupervisor

logger = logging.getLogger(__name__)

#: At most this many publishers' audio is mixed (the first to join: hosts and speakers).
MAX_AUDIO_TRACKS = 16


@dataclass
class _Broadcast:
    """One room's broadcast on this node."""

    supervisor: WorkerSupervisor
    feed: BroadcastFeed
    location: BroadcastLocation
    #: When the location was last published (monotonic seconds; 0: not yet).
    published_at: float = 0.0
    programme: Programme | None = None
    ended: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class BroadcastService:
    """Runs the broadcasts of this node's owned rooms (see the module docstring)."""

    def __init__(
        self,
        directory: RoomDirectory,
        media_node: MediaNode,
        root: Path,
        *,
        locator: BroadcastLocator | None = None,
        interval: float = 0.5,
        worker_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        #: Publishes where each broadcast is (None: nobody else serves them).
        self.locator = locator
        self.media_node = media_node
        #: Absolute: other processes read the published directory (see locator.py).
        self.root = root.resolve()
        self.interval = interval
        self.worker_args = worker_args
        self.broadcasts: dict[str, _Broadcast] = {}
        self._task: asyncio.Task[None] | None = None

    def path(self, room_id: str) -> Path:
        """Where a room's HLS files and programme.json are."""
        return self.root / room_id

    def start(self) -> None:
        """Start watching the owned rooms."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="broadcasts")

    async def close(self) -> None:
        """Stop every worker and remove their files (this node no longer serves them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for room_id in list(self.broadcasts):
            await self._drop(room_id)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # this node's directory (it is left if anything else is in it)

    async def _run(self) -> None:
        try:
            await self.sweep()
        except Exception:
            logger.exception("sweeping dead nodes' broadcast files failed")
        while True:
            try:
                await self.sync()
            except Exception:
                logger.exception("broadcast upkeep failed")
            await asyncio.sleep(self.interval)

    async def sweep(self) -> None:
        """Remove the broadcast directories of nodes sharing this data directory that died
        without cleaning up (killed): a node that is not alive in Redis serves nothing."""
        shared = self.root.parent
        others = [
            entry.name
            for entry in await asyncio.to_thread(lambda: list(shared.iterdir()))
            if entry.is_dir() and entry.name != self.root.name
        ]
        if not others:
            return
        alive = await self.directory.store.alive(others)
        for node_id in others:
            if not alive.get(node_id, True):
                logger.info("removing the broadcast files of dead node %s", node_id)
                await asyncio.to_thread(shutil.rmtree, shared / node_id, True)

    async def sync(self) -> None:
        """Bring every owned room's broadcast in line with its state (one pass)."""
        owned: dict[str, OwnedRoom] = {}
        for room_id in self.directory.owned():
            actor = self.directory.actor(room_id)
            if actor is not None:
                owned[room_id] = actor.room
        for room_id in list(self.broadcasts):
            if room_id not in owned or owned[room_id].room.broadcast == "off":
                await self._drop(room_id)
        for room_id, room in owned.items():
            if room.room.broadcast == "off":
                continue
            status = room.live.status
            current = self.broadcasts.get(room_id)
            if status == "live" and (current is None or current.ended):
                if current is not None:
                    await self._drop(room_id)
                current = await self._start(room)
            if current is None:
                continue
            if status == "ended" and not current.ended:
                await self._end(room_id, room)
            elif status == "live" and not current.supervisor.failed:
                self._update(room, current)
            await self._publish(current)

    async def _publish(self, broadcast: _Broadcast) -> None:
        """Keep naming this node as the broadcast's origin (renewed well within the TTL)."""
        if self.locator is None:
            return
        now = time.monotonic()
        if now - broadcast.published_at < self.locator.ttl / 3:
            return
        try:
            await self.locator.publish(broadcast.supervisor.room_id, broadcast.location)
        except Exception as exc:  # Redis away: other nodes cannot find it until it is back
            logger.warning("broadcast of %s not published: %s", broadcast.supervisor.room_id, exc)
        else:
            broadcast.published_at = now

    async def _start(self, room: OwnedRoom) -> _Broadcast:
        room_id = room.room_id
        holder: list[_Broadcast] = []

        def on_failed(reason: str) -> None:
            logger.error("broadcast of %s failed: %s", room_id, reason)
            if holder:
                holder[0].feed.detach_all()
                self._write_public(room_id, holder[0].programme, state="failed")
            self._tell(room_id, "broadcast_failed", {"reason": reason})

        supervisor = WorkerSupervisor(
            room_id,
            self.path(room_id),
            on_keyframe=lambda slot: holder[0].feed.request_keyframe(slot) if holder else None,
            on_failed=on_failed,
            worker_args=self.worker_args,
        )
        origin = new_origin()
        location = BroadcastLocation(
            node=self.directory.node.id,
            url=self.directory.node.url,
            directory=str(self.path(room_id)),
            origin=origin,
        )
        broadcast = _Broadcast(supervisor, BroadcastFeed(supervisor.send), location)
        holder.append(broadcast)
        self.broadcasts[room_id] = broadcast
        await supervisor.start()  # empties the directory: the tag is written after
        await asyncio.to_thread(write_origin, self.path(room_id), origin)
        self._tell(room_id, "broadcast_started", {})
        return broadcast

    def _update(self, room: OwnedRoom, broadcast: _Broadcast) -> None:
        media = self.media_node.get_room(room.room_id)
        wanted = select_tracks(room, media.tracks() if media is not None else ())
        slots = broadcast.feed.select(media, wanted)
        programme = compose_programme(room, slots)
        if programme != broadcast.programme:
            broadcast.programme = programme
            broadcast.supervisor.send(wire.pack_json(wire.STATE, programme.to_json()))
            self._write_public(room.room_id, programme, state="live")

    async def _end(self, room_id: str, room: OwnedRoom) -> None:
        broadcast = self.broadcasts[room_id]
        broadcast.ended = True
        broadcast.feed.detach_all()
        # Told before the playlist closes: a viewer who sees the end finds out why.
        self._write_public(room_id, broadcast.programme, state="ended")
        await broadcast.supervisor.stop()

    async def _drop(self, room_id: str) -> None:
        broadcast = self.broadcasts.pop(room_id, None)
        if broadcast is None:
            return
        if self.locator is not None:
            await self.locator.withdraw(room_id, broadcast.location)
        broadcast.feed.detach_all()
        await broadcast.supervisor.stop()
        await asyncio.to_thread(shutil.rmtree, self.path(room_id), True)

    def _write_public(self, room_id: str, programme: Programme | None, *, state: str) -> None:
        body = programme.public() if programme is not None else {"room": room_id}
        body["state"] = state
        target = self.path(room_id) / "programme.json"
        if not target.parent.is_dir():
            return
        temporary = target.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(body, ensure_ascii=False))
        os.replace(temporary, target)

    def _tell(self, room_id: str, event_type: str, data: dict[str, object]) -> None:
        """A timeline entry in the room (hosts see it; the archive keeps it)."""
        actor = self.directory.actor(room_id)
        broadcast = self.broadcasts.get(room_id)
        if actor is None or broadcast is None:
            return

        async def tell() -> None:
            with contextlib.suppress(Exception):
                await actor.run(lambda owned: owned.timeline(event_type, data), urgent=False)

        task = asyncio.create_task(tell())
        broadcast.tasks.add(task)
        task.add_done_callback(broadcast.tasks.discard)


def _speaker(room: OwnedRoom, participant: Participant) -> Speaker:
    venue = room.room.venue(participant.venue)
    return Speaker(
        identity=participant.identity,
        name=participant.name,
        role=participant.role.value,
        venue_name=venue.name if venue else participant.venue,
        level=venue.level.value if venue else None,
    )


def _host(room: OwnedRoom) -> Participant | None:
    return next((p for p in room.participants.values() if p.role is Role.HOST), None)


def _shown(room: OwnedRoom) -> str | None:
    """Who the programme shows large: the floor holder, else the pinned, else the host."""
    live = room.live
    if live.floor is not None:
        return live.floor.identity
    if live.pinned is not None:
        return live.pinned
    host = _host(room)
    return host.identity if host else None


def select_tracks(
    room: OwnedRoom, tracks: tuple[TrackInfo, ...]
) -> list[tuple[TrackInfo, SlotRole]]:
    """The tracks the programme needs: the main video (a shared screen, else the shown
    participant's camera), the host's camera for the corner, and the audio."""
    screen = room.live.screen.track if room.live.screen is not None else None

    def camera(identity: str | None) -> TrackInfo | None:
        return next(
            (
                t
                for t in tracks
                if t.kind == "video" and t.participant_id == identity and t.track_id != screen
            ),
            None,
        )

    wanted: list[tuple[TrackInfo, SlotRole]] = []
    shown = _shown(room)
    main = next((t for t in tracks if t.track_id == screen), None) or camera(shown)
    if main is not None:
        wanted.append((main, "main"))
    host = _host(room)
    corner = camera(host.identity) if host is not None else None
    if corner is not None and corner is not main:
        wanted.append((corner, "corner"))
    audio = [t for t in tracks if t.kind == "audio"][:MAX_AUDIO_TRACKS]
    wanted.extend((t, "audio") for t in audio)
    return wanted


def compose_programme(room: OwnedRoom, slots: tuple[TrackSlot, ...]) -> Programme:
    """The programme of a room now, with the track slots the worker receives."""
    live = room.live
    agenda = room.room.agenda
    item = agenda[live.agenda_index].title if 0 <= live.agenda_index < len(agenda) else ""
    shown_id = _shown(room)
    shown = room.participants.get(shown_id) if shown_id else None
    host = _host(room)
    on_screen = room.state.gallery.get(room.state.gallery_on_screen or "")
    gallery = on_screen.text if on_screen is not None and on_screen.status == "approved" else None
    return Programme(
        room=room.room_id,
        title=room.room.title,
        status=live.status,
        agenda=item,
        agenda_index=live.agenda_index,
        shown=_speaker(room, shown) if shown else None,
        has_floor=live.floor is not None
        and shown is not None
        and live.floor.identity == shown.identity,
        host=_speaker(room, host) if host else None,
        gallery=gallery,
        paused=live.broadcast_paused,
        tracks=slots,
    )
