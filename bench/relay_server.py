"""The baseline: a naive aiortc relay server (decode once, re-encode per subscriber).

This is what aiortc's examples suggest for fan-out: ``MediaRelay`` subscribes
each subscriber's sender to the publisher's decoded track, so every subscriber
gets its own VP8 and Opus encoder. It speaks the same pipe protocol as the
forwarding server in forwarding.py, so the same client processes are used.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from server.media.aiortc_internals import gather_only_on

LOOPBACK = ("127.0.0.1",)


def _configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class MediaRelayServer:
    """One publisher relayed to any number of subscribers through MediaRelay."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source_tracks: list[MediaStreamTrack] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.tracks_ready = asyncio.Event()

    async def on_publish_offer(self, pid: str, sdp: str) -> str:
        """Apply the publisher's offer; its tracks are decoded by aiortc's receivers."""
        pc = self.pcs[pid] = RTCPeerConnection(_configuration())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.source_tracks.append(track)
            if len(self.source_tracks) == 2:
                self.tracks_ready.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def subscriber_offer(self, pid: str) -> str:
        """A new subscriber: one sender (and so one encoder) per relayed track."""
        await self.tracks_ready.wait()
        pc = self.pcs[pid] = RTCPeerConnection(_configuration())
        for track in sorted(self.source_tracks, key=lambda t: t.kind):
            # Unbuffered: a slow encoder skips frames instead of queueing them forever.
            pc.addTrack(self.relay.subscribe(track, buffered=False))
        with gather_only_on(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def on_subscriber_answer(self, pid: str, sdp: str) -> None:
        """Apply a subscriber's answer."""
        await self.pcs[pid].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Nothing beyond CPU, which the orchestrator measures."""
        return {}
