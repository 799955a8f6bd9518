"""One load-test participant: the browser's protocol, played by aiortc, cheaply.

It joins with its token (the Python `RoomClient`), publishes a pre-encoded
clip if it is a publisher, answers the server's subscriber offers with a
counting receiver per track (fed from the datagram callback: the compiled ingest,
or `cheap_receive`), and rebuilds both connections when the room moves to
another node — what the browser client does, minus decoding.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from server.loadtest import cheap_receive, clip_sender
from server.loadtest.clip import Clip, ClipTrack
from server.loadtest.clip_sender import ClipSender
from server.loadtest.latency import ArrivalLog, ProbeCounter, SendLog
from server.loadtest.receiver_stats import TrackCounter
from server.media import ingest
from server.media.aiortc_internals import (
    INGEST_RECEIVER_ATTRIBUTES,
    gather_only_on,
    install_jitter_buffer,
    install_sender,
)
from signaling.client import RoomClient


def rtc_configuration(ice_servers: list[dict[str, Any]], relay_only: bool) -> RTCConfiguration:
    """The ICE servers the join handed out (none: nothing leaves the test network), max-bundle
    as the browser client; `relay_only` uses TURN alone, as a venue without UDP must."""
    servers = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in ice_servers
    ]
    return RTCConfiguration(
        iceServers=servers,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


def count_in_callback(pc: RTCPeerConnection) -> None:
    """Count ``pc``'s RTP in the datagram callback, not through aiortc's receive path:
    with the node's compiled ingest where it is built and selected (`ingest.install`:
    each packet in C up to the counter), else with `cheap_receive` (Python). Call after
    the local description is set and before the answer is sent, again after each
    renegotiation.

    Either way the receivers estimate no bandwidth (no REMB) and ask for no
    retransmission (no NACK): loss is what the network and the server lost, and the
    server adapts to what the receiver reports say (loss, jitter), as it did for
    `cheap_receive`. An estimator on a client whose core is busy reads its own
    queueing as congestion, and would measure the client."""
    for transceiver in pc.getTransceivers():
        state = vars(transceiver.receiver)
        state[INGEST_RECEIVER_ATTRIBUTES["remote_bitrate_estimator"]] = None
        state[INGEST_RECEIVER_ATTRIBUTES["nack_generator"]] = None
    if not (receives_compiled() and ingest.install(pc)):
        cheap_receive.install(pc)


def receives_compiled() -> bool:
    """Whether the receivers count through the compiled ingest (else `cheap_receive`)."""
    return ingest.enabled and ingest.compiled


class LoadParticipant:
    """A joined participant whose received media is counted, never decoded."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        video: Clip | None,
        audio: Clip | None,
        codec: str,
        ice_addresses: tuple[str, ...] | None,
        relay_only: bool = False,
        probe: bool = False,
    ) -> None:
        self.relay_only = relay_only
        #: When its sampled packets were sent (a publisher), and, for a latency probe,
        #: when the sampled video packets it receives arrived (server/loadtest/latency.py).
        self.send_log = SendLog()
        self.arrival_log = ArrivalLog() if probe else None
        self.signaling = RoomClient(base_url, token, reconnect=True)
        self.video, self.audio, self.codec = video, audio, codec
        self.ice_addresses = ice_addresses
        #: The msid stream of what this participant publishes (as a browser's, one per peer).
        self._stream_id = str(uuid.uuid4())
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.tracks: list[TrackCounter] = []
        self._publishers: dict[str, str] = {}  # mid -> publishing identity
        self._media_owner: str | None = None
        self.join_started_at: float | None = None
        #: When the join was acked, the first subscriber offer came and the subscribe
        #: connection first connected (monotonic): the steps to the first frame.
        self.joined_at: float | None = None
        self.first_offer_at: float | None = None
        self.subscribe_connected_at: float | None = None
        #: Subscriber offers received (a burst of joins should cost each a few, not one each).
        self.offers = 0
        self.failed: str | None = None
        self.media_restarts = 0
        self.signaling.on("subscriber_offer", self._on_subscriber_offer)
        self.signaling.on("rejoined", lambda _: self._restart_media())
        self.signaling.on("media_moved", self._on_media_moved)
        self.signaling.on("resync", self._on_resync)

    def _configuration(self) -> RTCConfiguration:
        return rtc_configuration(self.signaling.ice_servers, self.relay_only)

    @property
    def first_video_at(self) -> float | None:
        """When the first video frame of anyone arrived."""
        times = [t.first_frame_at for t in self.tracks if t.kind == "video" and t.first_frame_at]
        return min(times, default=None)

    async def join(self) -> None:
        """Connect, join, and publish if this participant has media to send."""
        self.join_started_at = time.monotonic()
        await self.signaling.connect()
        self.joined_at = time.monotonic()
        self._media_owner = self.signaling.owner.id if self.signaling.owner else None
        await self._publish()

    async def _publish(self) -> None:
        if self.video is None and self.audio is None:
            return
        pc = self.publish_pc = RTCPeerConnection(self._configuration())
        if self.audio is not None:
            self._add_clip(pc, self.audio)
        if self.video is not None:
            transceiver = self._add_clip(pc, self.video)
            wanted = "video/H264" if self.codec == "h264" else "video/VP8"
            capabilities = RTCRtpSender.getCapabilities("video")
            if capabilities is not None:
                transceiver.setCodecPreferences(
                    [c for c in capabilities.codecs if c.mimeType in (wanted, "video/rtx")]
                )
        with gather_only_on(self.ice_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        ack = await self.signaling.call("publish_offer", {"sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))

    def _add_clip(self, pc: RTCPeerConnection, clip: Clip) -> RTCRtpTransceiver:
        """A send-only m-line playing ``clip``: a `ClipSender` (the node's compiled send
        path) where the fan-out is built, else aiortc's sender on a `ClipTrack`."""
        if not clip_sender.available():
            transceiver = pc.addTransceiver(ClipTrack(clip), direction="sendonly")
            if clip.kind == "video" and transceiver.sender.transport is not None:
                self.send_log.attach(transceiver.sender.transport)  # audio's too (max-bundle)
            return transceiver
        transceiver = pc.addTransceiver(clip.kind, direction="sendonly")
        sender = ClipSender(
            clip, transceiver.receiver.transport, on_send=self.send_log.note_payload
        )
        install_sender(transceiver, sender, stream_id=self._stream_id, track_id=str(uuid.uuid4()))
        return transceiver

    async def _on_subscriber_offer(self, payload: dict[str, Any]) -> None:
        self.offers += 1
        if self.first_offer_at is None:
            self.first_offer_at = time.monotonic()
        for track in payload["tracks"]:
            self._publishers[track["mid"]] = track["identity"]
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(self._configuration())
            self.subscribe_pc.on("track", self._on_track)
            self.subscribe_pc.on("connectionstatechange", self._on_subscribe_state)
        pc = self.subscribe_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=payload["sdp"], type="offer"))
        with gather_only_on(self.ice_addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        count_in_callback(pc)
        await self.signaling.call(
            "subscriber_answer",
            {"sdp": pc.localDescription.sdp, "offer_id": payload.get("offer_id")},
        )

    def _on_subscribe_state(self) -> None:
        pc = self.subscribe_pc
        connected = pc is not None and pc.connectionState == "connected"
        if connected and self.subscribe_connected_at is None:
            self.subscribe_connected_at = time.monotonic()

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.subscribe_pc is not None
        transceiver = next(
            t for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track
        )
        publisher = self._publishers.get(transceiver.mid or "", "?")
        counter = (
            TrackCounter(track.kind, publisher)
            if self.arrival_log is None
            else ProbeCounter(track.kind, publisher, log=self.arrival_log)
        )
        # The answer is being made: the receiver has not started, its buffer can be swapped.
        install_jitter_buffer(transceiver.receiver, counter)
        self.tracks.append(counter)

    async def _on_resync(self, payload: dict[str, Any]) -> None:
        owner = payload["snapshot"].get("owner") or {}
        if payload.get("media_reset") or owner.get("id") != self._media_owner:
            await self._restart_media()

    async def _on_media_moved(self, payload: dict[str, Any]) -> None:
        if payload["owner"]["id"] != self._media_owner:
            await self._restart_media()

    async def _restart_media(self) -> None:
        self._media_owner = self.signaling.owner.id if self.signaling.owner else None
        old = [pc for pc in (self.publish_pc, self.subscribe_pc) if pc is not None]
        self.publish_pc = self.subscribe_pc = None
        self.tracks = []  # the new connection's tracks are counted afresh
        for pc in old:
            with contextlib.suppress(Exception):
                await pc.close()
        self.media_restarts += 1
        await self._publish()

    async def close(self) -> None:
        """Leave and close both connections."""
        with contextlib.suppress(Exception):
            await self.signaling.close()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await pc.close()
