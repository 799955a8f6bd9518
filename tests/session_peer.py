"""SessionPeer: a participant played by aiortc, through the real server's Socket.IO protocol.

It joins with a token (RoomClient), publishes a frame-counter video and a tone
on its publish connection, answers the server's subscriber offers, and decodes
what it receives, mapping each track to its publisher with the offer's
`tracks` list — exactly what the browser client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.aiortc_internals import gather_only_on
from signaling.client import RoomClient
from tests.media.media_testkit import (
    CounterVideoTrack,
    ToneAudioTrack,
    client_configuration,
    read_counter_frame,
)

LOOPBACK = ("127.0.0.1",)


@dataclass
class Received:
    """One remote track and what was decoded from it."""

    identity: str
    kind: str
    track: MediaStreamTrack
    frames: int = 0
    counters: list[tuple[int, int]] = field(default_factory=list)
    first_frame_at: float | None = None
    ended: bool = False
    task: asyncio.Task[None] | None = None
    #: (width, height) of the last decoded video frame.
    size: tuple[int, int] | None = None


class SessionPeer:
    """A joined participant with real peer connections to the server."""

    def __init__(
        self,
        base_url: str,
        token: str,
        index: int,
        amplitude: float = 0.0,
        *,
        reconnect: bool = False,
    ) -> None:
        self.signaling = RoomClient(base_url, token, reconnect=reconnect)
        self.index = index
        self.amplitude = amplitude
        self.video = CounterVideoTrack(index, 160, 120)
        self.audio = ToneAudioTrack(amplitude)
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        #: The DTLS fingerprint of the server's side of the subscribe connection.
        self._subscribe_fingerprint: str | None = None
        self.received: list[Received] = []
        self.mids: dict[str, str] = {}
        self.subscribe_connected_at: float | None = None
        self.publishing = False
        #: Times both connections were rebuilt (the room moved, or this peer rejoined).
        self.media_restarts = 0
        self.signaling.on("subscriber_offer", self._on_subscriber_offer)
        #: The room owner the peer connections were made with (its media server).
        self.media_owner: str | None = None
        # Like the browser: a new connection, or a new owner, means new peer connections.
        self.signaling.on("rejoined", lambda _: self._restart_media())
        self.signaling.on("media_moved", self._on_media_moved)
        self.signaling.on("resync", self._on_resync)
        # Like the browser: the control room asks for fresh peer connections.
        self.signaling.on("reconnect_media", lambda _: self._restart_media(tell_server=True))

    async def join(self) -> None:
        """Connect and join (no media yet)."""
        await self.signaling.connect()
        self.media_owner = self.signaling.owner.id if self.signaling.owner else None

    async def publish(self) -> None:
        """Send camera (frame counter) and microphone (tone) to the server."""
        self.publishing = True
        pc = self.publish_pc = RTCPeerConnection(client_configuration())
        pc.addTransceiver(self.audio, direction="sendonly")
        pc.addTransceiver(self.video, direction="sendonly")
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        ack = await self.signaling.call("publish_offer", {"sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))

    async def _on_subscriber_offer(self, payload: dict[str, Any]) -> None:
        for track in payload["tracks"]:
            self.mids[track["mid"]] = track["identity"]
        fingerprint = _fingerprint(payload["sdp"])
        if self.subscribe_pc is not None and fingerprint != self._subscribe_fingerprint:
            # Like the browser: another fingerprint is a fresh server connection (ours was
            # replaced, e.g. as a new owner took the session over): answer on a new one.
            pc, self.subscribe_pc = self.subscribe_pc, None
            with contextlib.suppress(Exception):
                await pc.close()
        self._subscribe_fingerprint = fingerprint
        if self.subscribe_pc is None:
            pc = self.subscribe_pc = RTCPeerConnection(client_configuration())
            pc.on("track", self._on_track)

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState == "connected" and self.subscribe_connected_at is None:
                    self.subscribe_connected_at = time.monotonic()
                await self.signaling.notify()

        pc = self.subscribe_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=payload["sdp"], type="offer"))
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        await self.signaling.call(
            "subscriber_answer",
            {"sdp": pc.localDescription.sdp, "offer_id": payload["offer_id"]},
        )

    async def _on_resync(self, payload: dict[str, Any]) -> None:
        owner = payload["snapshot"].get("owner") or {}
        if payload.get("media_reset") or owner.get("id") != self.media_owner:
            await self._restart_media()

    async def _on_media_moved(self, payload: dict[str, Any]) -> None:
        if payload["owner"]["id"] != self.media_owner:
            await self._restart_media()

    async def _restart_media(self, *, tell_server: bool = False) -> None:
        """Drop both connections and publish again (the server offers the rest anew).

        With `tell_server` (the browser's `media.restart()`), `media_restart` asks the
        server for a fresh subscribe connection first.
        """
        self.media_owner = self.signaling.owner.id if self.signaling.owner else None
        old = [pc for pc in (self.publish_pc, self.subscribe_pc) if pc is not None]
        self.publish_pc = self.subscribe_pc = None
        self.subscribe_connected_at = None
        for received in self.received:
            received.ended = True
            if received.task is not None:
                received.task.cancel()
        for pc in old:
            with contextlib.suppress(Exception):
                await pc.close()
        if tell_server:
            await self.signaling.call("media_restart", {})
        self.media_restarts += 1
        if self.publishing:
            # Closing a peer connection ends the tracks it sent: capture afresh, like a
            # browser asking for the camera again.
            self.video = CounterVideoTrack(self.index, 160, 120)
            self.audio = ToneAudioTrack(self.amplitude)
            await self.publish()
        await self.signaling.notify()

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.subscribe_pc is not None
        mid = next(t.mid for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track)
        received = Received(identity=self.mids.get(mid or "", "?"), kind=track.kind, track=track)
        self.received.append(received)
        received.task = asyncio.create_task(self._consume(received))

    async def _consume(self, received: Received) -> None:
        try:
            while True:
                frame = await received.track.recv()
                received.frames += 1
                if received.first_frame_at is None:
                    received.first_frame_at = time.monotonic()
                if received.kind == "video":
                    received.counters.append(read_counter_frame(frame))
                    received.size = (frame.width, frame.height)
                await self.signaling.notify()
        except MediaStreamError:
            received.ended = True
            await self.signaling.notify()

    def tracks_from(self, identity: str, kind: str) -> list[Received]:
        """Live tracks received from `identity`."""
        return [
            r for r in self.received if r.identity == identity and r.kind == kind and not r.ended
        ]

    def frames_from(self, identity: str, kind: str) -> int:
        """Frames decoded so far from `identity`'s live tracks of this kind."""
        return sum(r.frames for r in self.tracks_from(identity, kind))

    def frames_ever(self, identity: str, kind: str) -> int:
        """Frames decoded so far from `identity` of this kind over all its tracks, ended
        ones included: it grows only with media that arrives, so a baseline taken when a
        node goes away tells new media from the old connection's (whose tracks may stay
        "live" until a consent check fails)."""
        return sum(r.frames for r in self.received if r.identity == identity and r.kind == kind)

    async def wait_for(self, condition: Any, timeout: float = 15.0) -> None:
        """Wait until `condition()` holds (re-checked on every decoded frame and event)."""
        await self.signaling.wait_for(condition, timeout)

    async def close(self) -> None:
        """Leave and close both peer connections."""
        for received in self.received:
            if received.task is not None:
                received.task.cancel()
        await asyncio.gather(*(r.task for r in self.received if r.task), return_exceptions=True)
        await self.signaling.close()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await pc.close()


def _fingerprint(sdp: str) -> str | None:
    """The DTLS fingerprint an SDP names (one per connection)."""
    match = re.search(r"^a=fingerprint:(.+)$", sdp, re.MULTILINE)
    return match.group(1).strip() if match else None
