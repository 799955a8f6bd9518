"""A participant's publish peer connection: the client offers, the server answers.

The client sends its camera and microphone here. Each m-line the client sends
on gets a packet tap on its receiver and a :class:`TrackForwarder`; nothing is
decoded. The client renegotiates (adds or stops tracks) by sending a new offer
on the same connection; an offer after the connection failed or closed starts a
fresh connection (aiortc has no ICE restart, so this is how a client recovers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from . import ingest
from .active_speaker import AudioLevelMeter
from .aiortc_internals import gather_only_on, install_jitter_buffer, received_counts, send_pli
from .codec_selection import rtx_capability, select_publish_codec
from .config import MediaConfig
from .errors import MediaError
from .ice_policy import IcePolicy
from .packet_tap import PacketTap
from .quality_tiers import PublisherUplink
from .remote_candidates import RemoteCandidates
from .sdp_validation import ValidatedSdp, validate_sdp
from .track_forwarder import TrackForwarder

logger = logging.getLogger(__name__)

_TERMINAL_STATES = ("failed", "closed")


@dataclass
class _Inbound:
    """One receiving m-line: its transceiver, tap and (once negotiated) forwarder."""

    transceiver: RTCRtpTransceiver
    tap: PacketTap
    forwarder: TrackForwarder | None = None


class PublishConnection:
    """The publish side of one participant (see module docstring)."""

    def __init__(
        self,
        *,
        participant_id: str,
        config: MediaConfig,
        policy: IcePolicy,
        can_publish: bool,
        new_track_id: Callable[[str], str],
        on_tracks_changed: Callable[[], None],
        on_state: Callable[[str], None],
        audio_level_meter: Callable[[], AudioLevelMeter] | None,
    ) -> None:
        self.participant_id = participant_id
        self._config = config
        self._policy = policy
        self._can_publish = can_publish
        self._new_track_id = new_track_id
        self._on_tracks_changed = on_tracks_changed
        self._on_state = on_state
        #: The participant's audio level meter (from the room's speaker detector).
        self._audio_level_meter = audio_level_meter
        self._pc: RTCPeerConnection | None = None
        self._inbound: dict[str, _Inbound] = {}
        self._candidates = RemoteCandidates(policy, config, "the offer")
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: mid of a low encoding => mid of its camera's high encoding.
        self._low_of: dict[str, str] = {}
        self._uplink = PublisherUplink()
        self._operator_cap: int | None = None
        self._log = f"publish({participant_id})"

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The current aiortc peer connection (diagnostics and tests only)."""
        return self._pc

    @property
    def connection_state(self) -> str:
        """aiortc connectionState of the current connection ("none" without one)."""
        return self._pc.connectionState if self._pc is not None else "none"

    @property
    def forwarders(self) -> list[TrackForwarder]:
        """Forwarders of the tracks this participant currently publishes.

        A camera's low encoding is not a track of its own (see ``TrackForwarder.low``).
        """
        return [
            i.forwarder
            for i in self._inbound.values()
            if i.forwarder is not None and not i.forwarder.is_low
        ]

    @property
    def all_forwarders(self) -> list[TrackForwarder]:
        """Every forwarder, low encodings included (counters)."""
        return [i.forwarder for i in self._inbound.values() if i.forwarder is not None]

    async def handle_offer(self, text: object, low_video: Mapping[str, str] | None = None) -> str:
        """Apply the client's offer and return our answer SDP (MediaError on refusal).

        ``low_video`` maps the mid of a camera's low encoding to the mid of its
        high one (``{"1": "0"}``): that m-line is then not a track of its own
        but the low source of the camera's slots (None: as before, or none).
        """
        offer = validate_sdp(
            text,
            sdp_type="offer",
            max_bytes=self._config.max_sdp_bytes,
            max_m_lines=self._config.max_m_lines,
        )
        low_pairs = None if low_video is None else _check_low_video(offer, low_video)
        if not self._can_publish and any(m.remote_sends for m in offer.media):
            raise MediaError("not_allowed", "this participant may not send media")
        async with self._lock:
            if self._closed:
                raise MediaError("closed", "the participant has left")
            # Checked again: the right may have been withdrawn while this offer waited.
            if not self._can_publish and any(m.remote_sends for m in offer.media):
                raise MediaError("not_allowed", "this participant may not send media")
            if self._pc is not None and self._pc.connectionState in _TERMINAL_STATES:
                await self._release_pc()
            fresh = self._pc is None
            plan = self._plan(offer)  # raises before any state is touched
            if self._pc is None:
                self._pc = self._create_pc()
            pc = self._pc
            if low_pairs is not None:
                self._low_of = low_pairs
            try:
                answer = await self._negotiate(pc, offer, plan)
            except MediaError:
                raise
            except Exception as exc:
                # aiortc may have applied part of the offer; a connection in an
                # unknown state is worse than none, so drop it (and its tracks).
                logger.warning("%s: offer failed in aiortc: %r", self._log, exc)
                await self._release_pc()
                raise MediaError("bad_sdp", "the offer could not be applied") from None
            if fresh:
                logger.info("%s: connection created", self._log)
            return answer

    @property
    def uplink_cap(self) -> int | None:
        """The bitrate cap (bit/s) this publisher's high encoding should keep to (None:
        none): its uplink's, or the control room's when that is lower."""
        caps = [c for c in (self._uplink.cap, self._operator_cap) if c is not None]
        return min(caps, default=None)

    @property
    def operator_cap(self) -> int | None:
        """The control room's cap on this publisher's high encoding (bit/s; None: none)."""
        return self._operator_cap

    def set_operator_cap(self, cap: int | None) -> bool:
        """Set the control room's cap; True if :attr:`uplink_cap` changed (hint the client)."""
        before = self.uplink_cap
        self._operator_cap = cap
        return self.uplink_cap != before

    def check_uplink(self, now: float) -> bool:
        """Measure the uplink's loss since the last call (video m-lines); True if the
        cap changed (the room then hints the client)."""
        expected = received = 0
        for inbound in self._inbound.values():
            if inbound.forwarder is not None and inbound.forwarder.kind == "video":
                e, r = received_counts(inbound.transceiver.receiver)
                expected += e
                received += r
        if expected == 0:
            return False
        before = self.uplink_cap
        self._uplink.observe(now, expected, received)
        changed = self.uplink_cap != before
        if changed:
            logger.info("%s: uplink cap now %s bit/s", self._log, self.uplink_cap)
        return changed

    async def add_candidate(self, candidate: object) -> None:
        """Add a trickled remote candidate (validated; queued until the offer is applied)."""
        async with self._lock:
            await self._candidates.add(self._pc, candidate)

    async def reset(self) -> None:
        """End all tracks and close the connection; the client's next offer makes a new one."""
        async with self._lock:
            await self._release_pc()

    @property
    def can_publish(self) -> bool:
        """Whether offers that send media are accepted."""
        return self._can_publish

    async def set_can_publish(self, allowed: bool) -> None:
        """Grant or withdraw the right to send media; withdrawing ends the tracks at once
        (the connection closes) and refuses later offers that send."""
        self._can_publish = allowed
        if not allowed:
            await self.reset()

    async def close(self) -> None:
        """End all tracks and close the connection (idempotent)."""
        self._closed = True
        async with self._lock:
            await self._release_pc()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- internals ----------------------------------------------------------------

    def _create_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._policy.rtc_configuration())

        def on_state_change() -> None:
            state = pc.connectionState
            logger.debug("%s: connection %s", self._log, state)
            self._on_state(state)
            if state in _TERMINAL_STATES and pc is self._pc and not self._closed:
                self._spawn(self._release_if_current(pc))

        pc.on("connectionstatechange", on_state_change)
        return pc

    def _plan(self, offer: ValidatedSdp) -> list[tuple[str, str, RTCRtpCodecCapability]]:
        """New m-lines to prepare: (mid, kind, capability). Validates against current state."""
        existing = {}
        if self._pc is not None:
            existing = {t.mid: t.kind for t in self._pc.getTransceivers() if t.mid is not None}
        plan = []
        for media in offer.media:
            if media.mid in existing:
                if existing[media.mid] != media.kind:
                    raise MediaError("bad_sdp", f"m-line {media.index} changed kind")
                continue
            preferences = (
                self._config.audio_codecs if media.kind == "audio" else self._config.video_codecs
            )
            capability = select_publish_codec(media.kind, media.codecs, preferences)
            if capability is None:
                raise MediaError(
                    "bad_sdp",
                    f"m-line {media.index}: no supported {media.kind} codec "
                    f"(accepted: {', '.join(preferences)})",
                )
            plan.append((media.mid, media.kind, capability))
        if existing and len(offer.media) < len(existing):
            raise MediaError("bad_sdp", "a re-offer cannot remove m-lines")
        return plan

    async def _negotiate(
        self,
        pc: RTCPeerConnection,
        offer: ValidatedSdp,
        plan: list[tuple[str, str, RTCRtpCodecCapability]],
    ) -> str:
        # Pre-create the transceivers, so that (1) the codec preference applies to
        # the answer and (2) the tap is in place before the receiver can start.
        for mid, kind, capability in plan:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "video":
                transceiver.setCodecPreferences([capability, rtx_capability()])
            else:
                transceiver.setCodecPreferences([capability])
            tap = PacketTap()
            install_jitter_buffer(transceiver.receiver, tap)
            self._inbound[mid] = _Inbound(transceiver=transceiver, tap=tap)

        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=self._policy.remote_sdp(offer.text), type="offer")
        )
        # aiortc pairs pre-created transceivers with m-lines in order; check it did.
        for mid, inbound in self._inbound.items():
            if inbound.transceiver.mid not in (None, mid):
                raise RuntimeError(f"transceiver for mid {mid} got {inbound.transceiver.mid}")
        await self._candidates.apply_pending(pc)

        answer = await pc.createAnswer()
        with gather_only_on(self._policy.gather_addresses, self._policy.remote_allow):
            await pc.setLocalDescription(answer)
        local = pc.localDescription.sdp
        ingest.install(pc)  # before any RTP can arrive: ICE has not started yet
        self._update_forwarders(local)
        return self._policy.rewrite_local_sdp(local)

    def _update_forwarders(self, local_sdp: str) -> None:
        description = aiortc_sdp.SessionDescription.parse(local_sdp)
        changed = False
        for media in description.media:
            inbound = self._inbound.get(media.rtp.muxId or "")
            if inbound is None:
                continue
            receiving = media.port != 0 and media.direction in ("recvonly", "sendrecv")
            if receiving and inbound.forwarder is None and media.rtp.codecs:
                receiver = inbound.transceiver.receiver

                async def pli(ssrc: int, receiver: RTCRtpReceiver = receiver) -> None:
                    await send_pli(receiver, ssrc)

                forwarder = TrackForwarder(
                    track_id=self._new_track_id(media.kind),
                    participant_id=self.participant_id,
                    kind=media.kind,
                    codec=media.rtp.codecs[0],
                    send_pli=pli,
                    keyframe_interval=self._config.keyframe_request_interval,
                    audio_level=(
                        self._audio_level_meter()
                        if self._audio_level_meter is not None and media.kind == "audio"
                        else None
                    ),
                )
                inbound.forwarder = forwarder
                inbound.tap.handler = forwarder.on_packet
                changed = True
                logger.info("%s: publishing %r", self._log, forwarder)
            elif not receiving and inbound.forwarder is not None:
                self._end_inbound(inbound)
                changed = True
        if self._link_low_encodings():
            changed = True
        if changed:
            self._on_tracks_changed()

    def _link_low_encodings(self) -> bool:
        """Pair each low encoding with its camera; True if which tracks are low changed."""
        before = {f for f in self.all_forwarders if f.is_low}
        for forwarder in self.all_forwarders:
            forwarder.low = None
            forwarder.is_low = False
        for low_mid, high_mid in self._low_of.items():
            low = self._inbound.get(low_mid)
            high = self._inbound.get(high_mid)
            if low is None or high is None or low.forwarder is None or high.forwarder is None:
                continue
            if low.forwarder.kind != "video" or high.forwarder.kind != "video":
                continue
            low.forwarder.is_low = True
            high.forwarder.low = low.forwarder
        return before != {f for f in self.all_forwarders if f.is_low}

    def _end_inbound(self, inbound: _Inbound) -> None:
        inbound.tap.handler = None
        if inbound.forwarder is not None:
            logger.info("%s: track %s ended", self._log, inbound.forwarder.track_id)
            inbound.forwarder.end()
            inbound.forwarder = None

    async def _release_if_current(self, pc: RTCPeerConnection) -> None:
        async with self._lock:
            if pc is self._pc:
                await self._release_pc()

    async def _release_pc(self) -> None:
        had_tracks = any(i.forwarder is not None for i in self._inbound.values())
        for inbound in self._inbound.values():
            self._end_inbound(inbound)
        self._inbound.clear()
        self._candidates.reset()
        pc, self._pc = self._pc, None
        if had_tracks:
            self._on_tracks_changed()
        if pc is not None:
            await pc.close()
            logger.info("%s: connection released", self._log)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _check_low_video(offer: ValidatedSdp, low_video: Mapping[str, str]) -> dict[str, str]:
    """The validated ``low_video`` pairs: both mids are distinct video m-lines of the offer."""
    video_mids = {m.mid for m in offer.media if m.kind == "video"}
    pairs: dict[str, str] = {}
    for low, high in low_video.items():
        if low not in video_mids or high not in video_mids or low == high:
            raise MediaError("bad_sdp", "low_video must pair two video m-lines of the offer")
        if high in low_video or high in pairs.values():
            raise MediaError("bad_sdp", "low_video: one low encoding per camera")
        pairs[low] = high
    return pairs
