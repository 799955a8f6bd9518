"""A participant's subscribe peer connection: the server offers, the client answers.

Why two peer connections per participant (publish + subscribe), as LiveKit does:
each connection is negotiated in one direction only. The client is always the
offerer on its publish connection and the server always the offerer here, so
the two sides never make offers at the same time (no glare, no "perfect
negotiation" rollback, which aiortc does not implement anyway), a change of the
room's tracks never waits behind a client's camera renegotiation, and a failure
on one side can be recovered without tearing down the other.

aiortc has no ``negotiationneeded`` event, so this class re-offers itself
whenever the set of forwarded tracks changes. Renegotiation is coalesced, so
that a burst of joins (every venue at a session's start) costs each subscriber
a few offers, not one per join: at most one offer is outstanding, and offers
are at least ``MediaConfig.subscriber_offer_interval`` apart; changes made
while an offer waits for its answer, or within that interval after it, are
folded into the one next offer. A change on an idle connection is offered at
once (a single join waits for no window), and so is a fresh connection's first
offer. (LiveKit debounces its subscriber transport's negotiation the same way;
here the first change goes out at once rather than after a quiet period.)

Tracks are added as new ``sendonly`` m-lines with a :class:`ForwardingSender`
restricted to the publisher's exact codec. A removed track's sender is stopped
at once, without waiting for the next offer (its RTCP BYE ends the track at the
client; only while an offer is outstanding does it wait for the answer), and
its m-line is offered as ``inactive``: aiortc can neither reject nor recycle
m-lines, so they stay, and a long-lived subscriber accumulates inactive m-lines
(``room.resubscribe()`` starts a fresh connection without them).

Last-N pausing (policy) never renegotiates: the sender just stops forwarding
and, on resume, starts again at a keyframe it asks for.

Quality per receiver never renegotiates either: each publisher's camera is one
slot (one m-line) fed from its high encoding, its low one, or nothing (see
``quality_tiers``), and this connection's :class:`ReceiverQuality` turns what
the client reports about its link into the level that decides which.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from . import ingest, outbound_srtp
from .aiortc_internals import gather_only_on, install_sender, receivers_without_estimator
from .codec_selection import preferences_for
from .config import MediaConfig
from .errors import MediaError
from .forwarding_sender import ForwardingSender
from .ice_policy import IcePolicy
from .quality_tiers import FULL, LEVEL_NAMES, Encoding, ReceiverQuality, slot_encoding
from .remote_candidates import RemoteCandidates
from .sdp_validation import MediaSection, validate_sdp
from .track_forwarder import TrackForwarder

logger = logging.getLogger(__name__)

_TERMINAL_STATES = ("failed", "closed")


@dataclass
class _Subscription:
    forwarder: TrackForwarder
    transceiver: RTCRtpTransceiver
    sender: ForwardingSender


@dataclass(frozen=True)
class _OfferedMedia:
    mid: str
    kind: str
    payload_types: frozenset[int]
    active: bool


class SubscribeConnection:
    """The subscribe side of one participant (see module docstring)."""

    def __init__(
        self,
        *,
        participant_id: str,
        config: MediaConfig,
        policy: IcePolicy,
        emit_offer: Callable[[str], None],
        on_state: Callable[[str], None],
        on_quality: Callable[[str, int, bool], None] | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._config = config
        self._policy = policy
        self._emit_offer = emit_offer
        self._on_state = on_state
        self._pc: RTCPeerConnection | None = None
        self._wanted: dict[TrackForwarder, None] = {}
        self._subs: dict[TrackForwarder, _Subscription] = {}
        self._paused_publishers: frozenset[str] = frozenset()
        self._on_quality = on_quality
        #: Whose camera is this receiver's spotlight (high encoding), and whether its
        #: tiles are on screen at all (a hidden tile area gets no video).
        self._spotlight: frozenset[str] = frozenset()
        self._tiles_visible = True
        self._quality = ReceiverQuality(config.tiers, time.monotonic())
        #: The control room's cap on this receiver's level (FULL: none): the link's own
        #: level can still go lower, never above it.
        self._cap = FULL
        self._reported: tuple[int, int, bool] = (FULL, 0, False)
        self._rate_mark: tuple[float, int] = (0.0, 0)
        self._rate = 0
        self._offered: tuple[_OfferedMedia, ...] = ()
        self._awaiting_answer = False
        #: `offer_id` of the outstanding offer (answers may name the offer they answer).
        self._offer_id: str | None = None
        self._dirty = False
        #: Whether the connection has changed since the last offer (a removed track's
        #: sender is stopped before its offer is made).
        self._unoffered = False
        #: loop.time() before which no new offer is made (0.0: the next one goes at once).
        self._next_offer_at = 0.0
        #: Changes of the tracks folded into the next offer (logged with it).
        self._changes = 0
        #: Set to end a wait for the offer interval early (a change, a fresh connection,
        #: close); the wait goes on if the interval still applies.
        self._wake = asyncio.Event()
        self._negotiation: asyncio.Task[None] | None = None
        self._candidates = RemoteCandidates(policy, config, "the answer")
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Set when the connection failed or closed under us: no more offers until
        # restart(), since nobody is there to answer them.
        self._released = False
        self._log = f"subscribe({participant_id})"
        self.offers_sent = 0

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The current aiortc peer connection (diagnostics and tests only)."""
        return self._pc

    @property
    def connection_state(self) -> str:
        """aiortc connectionState of the current connection ("none" without one)."""
        return self._pc.connectionState if self._pc is not None else "none"

    @property
    def awaiting_answer(self) -> bool:
        """True while an offer is outstanding."""
        return self._awaiting_answer

    @property
    def senders(self) -> list[ForwardingSender]:
        """The live forwarding senders (one per subscribed track)."""
        return [s.sender for s in self._subs.values()]

    def set_tracks(self, forwarders: Iterable[TrackForwarder]) -> None:
        """Declare the tracks this participant should receive; re-offers if it changed."""
        wanted = {f: None for f in forwarders if not f.ended}
        if list(wanted) == list(self._wanted):
            return
        self._wanted = wanted
        self._changes += 1
        self._schedule()

    def set_paused_publishers(self, paused: Iterable[str]) -> None:
        """Pause video from these publishers (last-N policy), resume all others."""
        self._paused_publishers = frozenset(paused)
        self._apply_slots()

    def set_view(self, spotlight: Iterable[str], tiles_visible: bool) -> None:
        """Whose camera this receiver shows large (high encoding), and whether it
        shows the other tiles at all."""
        self._spotlight = frozenset(spotlight)
        self._tiles_visible = bool(tiles_visible)
        self._apply_slots()

    @property
    def quality_level(self) -> str:
        """This receiver's level: "full", "reduced" or "audio_only" (its link's, or
        the control room's cap when that is lower)."""
        return LEVEL_NAMES[self._level()]

    @property
    def level_steps(self) -> tuple[int, int]:
        """The steps this receiver's link level took so far: (down, up)."""
        return self._quality.steps_down, self._quality.steps_up

    @property
    def level_cap(self) -> str:
        """The control room's cap on this receiver's level ("full": none)."""
        return LEVEL_NAMES[self._cap]

    def set_level_cap(self, level: int) -> None:
        """Cap this receiver's level (the control room lowers a venue's quality; FULL
        lifts the cap). The adaptive level goes on moving below it."""
        if level not in range(len(LEVEL_NAMES)):
            raise ValueError(f"no such level: {level!r}")
        self._cap = level
        self._apply_slots()

    def _level(self) -> int:
        return max(self._quality.level, self._cap)

    def slot_encodings(self) -> dict[str, Encoding]:
        """publisher id => what this receiver's slot for the publisher's camera forwards."""
        result: dict[str, Encoding] = {}
        for sub in self._subs.values():
            if sub.forwarder.kind != "video":
                continue
            sender = sub.sender
            if sender.paused:
                result[sub.forwarder.participant_id] = "off"
            else:
                source = sender.switching_to or sender.source
                low = source is not None and source.is_low
                result[sub.forwarder.participant_id] = "low" if low else "high"
        return result

    async def handle_answer(self, text: object, answers: str | None = None) -> None:
        """Apply the client's answer to our outstanding offer. `answers` is the `offer_id`
        of the offer it answers, if the client gave it: an answer to an offer of a
        connection since replaced is refused, not applied to the new connection's offer."""
        answer = validate_sdp(
            text,
            sdp_type="answer",
            max_bytes=self._config.max_sdp_bytes,
            # An answer mirrors our offer, which may have more m-lines than a client offer.
            max_m_lines=max(self._config.max_m_lines, len(self._offered)),
        )
        async with self._lock:
            if self._closed:
                raise MediaError("closed", "the participant has left")
            pc = self._pc
            if pc is None or not self._awaiting_answer:
                raise MediaError("bad_state", "no subscriber offer is outstanding")
            if answers is not None and answers != self._offer_id:
                raise MediaError("bad_state", "that offer was replaced by a newer one")
            self._check_answer(answer.media)
            try:
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=self._policy.remote_sdp(answer.text), type="answer")
                )
                await self._candidates.apply_pending(pc)
            except Exception as exc:
                logger.warning("%s: answer failed in aiortc: %r", self._log, exc)
                # Unknown state: start over with a fresh connection and offer.
                await self._release_pc()
                self._schedule()
                raise MediaError("bad_sdp", "the answer could not be applied") from None
            self._awaiting_answer = False
            logger.debug("%s: answer applied", self._log)
        if self._dirty:
            self._schedule()

    async def add_candidate(self, candidate: object) -> None:
        """Add a trickled remote candidate (validated; queued until the answer)."""
        async with self._lock:
            await self._candidates.add(self._pc, candidate)

    async def restart(self) -> None:
        """Drop the current connection and offer a fresh one (after a failure)."""
        async with self._lock:
            await self._release_pc()
            self._released = False
        self._schedule()

    async def close(self) -> None:
        """Stop all senders and close the connection (idempotent)."""
        self._closed = True
        self._wanted = {}
        self._wake.set()  # a negotiation waiting out the offer interval ends now
        negotiation, self._negotiation = self._negotiation, None
        if negotiation is not None:
            # Let a running offer finish rather than cancel it mid-gathering (aioice
            # would leave the sockets it was binding open); it is short and bounded.
            try:
                await asyncio.wait_for(asyncio.shield(negotiation), 5.0)
            except Exception:  # timeout, or the negotiation failed: either way stop it
                negotiation.cancel()
                await asyncio.gather(negotiation, return_exceptions=True)
        async with self._lock:
            await self._release_pc()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- negotiation ----------------------------------------------------------------

    def _schedule(self) -> None:
        self._dirty = True
        # A negotiation waiting out the offer interval looks again: a removed track's
        # sender is stopped now, whatever the next offer waits for.
        self._wake.set()
        if self._closed or self._released:
            return
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.create_task(
                self._run_negotiations(), name=f"media-negotiation-{self.participant_id}"
            )

    async def _run_negotiations(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Cleared before the checks: a change, a close or a fresh connection after
                # them ends the wait below.
                self._wake.clear()
                # With an offer outstanding, handle_answer() schedules what changed meanwhile.
                if not self._dirty or self._awaiting_answer or self._closed or self._released:
                    return
                async with self._lock:
                    await self._stop_unwanted()
                delay = self._next_offer_at - loop.time()
                if delay > 0:
                    # Within the offer interval: what changes until it ends goes into
                    # the same offer.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                self._dirty = False
                async with self._lock:
                    await self._negotiate_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: negotiation failed", self._log)

    async def _negotiate_once(self) -> None:
        if self._closed or self._released or self._awaiting_answer:
            return
        if self._pc is not None and _is_closing(self._pc):
            # Closed under us (the state event's release task has not run yet).
            await self._release_pc()
            self._released = True
            return
        pc = self._pc
        try:
            await self._stop_unwanted()
            self._add_wanted()
            pc = self._pc
            if not self._unoffered or pc is None:
                return
            self._unoffered = False
            offer = await pc.createOffer()
            with gather_only_on(self._policy.gather_addresses, self._policy.remote_allow):
                await pc.setLocalDescription(offer)
            ingest.install(pc)  # the subscriber's RTCP, in the datagram callback
            outbound_srtp.install(pc)  # the RTP we send, once DTLS has its keys
        except Exception as exc:
            if pc is None or not _is_closing(pc):
                raise
            # The client went away while we were preparing the offer.
            logger.info("%s: connection closed during negotiation (%r)", self._log, exc)
            await self._release_pc()
            self._released = True
            return
        local = pc.localDescription.sdp
        self._offered = _describe_offer(local)
        self._awaiting_answer = True
        interval = self._config.subscriber_offer_interval
        self._next_offer_at = asyncio.get_running_loop().time() + interval
        self.offers_sent += 1
        changes, self._changes = self._changes, 0
        logger.debug("%s: offer %d sent (%d changes)", self._log, self.offers_sent, changes)
        sent = self._policy.rewrite_local_sdp(local)
        self._offer_id = offer_id(sent)
        self._emit_offer(sent)

    async def _stop_unwanted(self) -> None:
        # Never while an offer is outstanding: a sender added by that offer and stopped
        # before its answer would be started by aiortc when the answer is applied.
        if self._awaiting_answer:
            return
        for forwarder in [f for f in self._subs if f not in self._wanted or f.ended]:
            sub = self._subs.pop(forwarder)
            sub.transceiver.direction = "inactive"
            # Stopping sends RTCP BYE: the client's track ends now, not at the next
            # offer (which may wait for the offer interval) or its answer.
            await sub.sender.stop()
            sub.sender.release()
            self._unoffered = True

    def _add_wanted(self) -> None:
        new = [f for f in self._wanted if f not in self._subs and not f.ended]
        if new and self._pc is None:
            self._pc = self._create_pc()
        pc = self._pc
        for forwarder in new:
            assert pc is not None
            # Send-only: its receiver never receives, and needs no bandwidth estimator.
            with receivers_without_estimator():
                transceiver = pc.addTransceiver(forwarder.kind, direction="sendonly")
            transceiver.setCodecPreferences(preferences_for(forwarder.codec))
            queue_size = (
                self._config.video_queue_packets
                if forwarder.kind == "video"
                else self._config.audio_queue_packets
            )
            sender = ForwardingSender(
                forwarder,
                transceiver.receiver.transport,
                queue_size=queue_size,
                keyframe_retry_interval=self._config.keyframe_retry_interval,
                receiver_keyframe_interval=self._config.receiver_keyframe_interval,
            )
            sender.on_report = self._on_report
            sender.on_remb = self._on_remb
            sender.on_switched = self._on_switched
            install_sender(
                transceiver,
                sender,
                stream_id=forwarder.participant_id,
                track_id=forwarder.track_id,
            )
            sub = _Subscription(forwarder=forwarder, transceiver=transceiver, sender=sender)
            self._subs[forwarder] = sub
            self._apply_slots()
            self._unoffered = True

    def _check_answer(self, media: Iterable[MediaSection]) -> None:
        answered = list(media)
        if [(m.mid, m.kind) for m in answered] != [(o.mid, o.kind) for o in self._offered]:
            raise MediaError("bad_sdp", "the answer's m-lines do not match the offer")
        for offered, m in zip(self._offered, answered, strict=True):
            if not offered.active or m.port == 0 or m.direction == "inactive":
                continue
            if m.remote_sends:
                raise MediaError("bad_sdp", f"m-line {m.index}: subscribers cannot send")
            if not any(c.payloadType in offered.payload_types for c in m.codecs):
                raise MediaError("bad_sdp", f"m-line {m.index}: the offered codec is missing")

    # --- connection life cycle --------------------------------------------------------

    def _create_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._policy.rtc_configuration())

        def on_state_change() -> None:
            state = pc.connectionState
            logger.debug("%s: connection %s", self._log, state)
            self._on_state(state)
            if state in _TERMINAL_STATES and pc is self._pc and not self._closed:
                self._spawn(self._release_if_current(pc))

        pc.on("connectionstatechange", on_state_change)
        logger.info("%s: connection created", self._log)
        return pc

    async def _release_if_current(self, pc: RTCPeerConnection) -> None:
        async with self._lock:
            if pc is self._pc:
                await self._release_pc()
                self._released = True

    async def _release_pc(self) -> None:
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            sub.sender.release()
        pc, self._pc = self._pc, None
        self._awaiting_answer = False
        self._offered = ()
        # A fresh connection's first offer waits for no interval; its client waits for it.
        self._next_offer_at = 0.0
        self._unoffered = False
        self._wake.set()
        self._candidates.reset()
        if pc is not None:
            await pc.close()  # stops every sender (BYE) and the transports
            logger.info("%s: connection released", self._log)

    # --- quality per receiver -------------------------------------------------------

    def _on_report(self, fraction_lost: float, jitter: float) -> None:
        if self._quality.observe_report(time.monotonic(), fraction_lost, jitter) is not None:
            self._apply_level()

    def check_quiet_link(self, now: float) -> None:
        """A level below full with nothing to judge it by for a while steps up, as a
        probe (``ReceiverQuality.observe_quiet``; called by the room's tick)."""
        if self._pc is not None and self._quality.observe_quiet(now) is not None:
            self._apply_level()

    def _on_remb(self, bitrate: int) -> None:
        now = time.monotonic()
        if self._quality.observe_remb(now, bitrate, self._sending_rate(now)) is not None:
            self._apply_level()

    def _apply_level(self) -> None:
        # A new level: a slot that switches encodings does so at the target's next
        # keyframe, and the step reaches the receiver only then (see _on_switched).
        self._apply_slots()
        if self._switching():
            self._quality.step_pending()

    def _on_switched(self) -> None:
        if not self._switching():
            self._quality.step_took_effect(time.monotonic())

    def _switching(self) -> bool:
        return any(sub.sender.switching_to is not None for sub in self._subs.values())

    def _sending_rate(self, now: float) -> int:
        """What we send this receiver, bit/s, measured over a second or more."""
        octets = sum(
            s.sender.channel.octets_sent
            for s in self._subs.values()
            if s.sender.channel is not None
        )
        mark_time, mark_octets = self._rate_mark
        if now - mark_time >= 1.0:
            if octets >= mark_octets and mark_time > 0:
                self._rate = int((octets - mark_octets) * 8 / (now - mark_time))
            self._rate_mark = (now, octets)
        return self._rate

    def _apply_slots(self) -> None:
        level = self._level()
        capped = self._cap > self._quality.level
        paused_by_link = 0
        for sub in self._subs.values():
            forwarder = sub.forwarder
            if forwarder.kind != "video":
                continue
            publisher = forwarder.participant_id
            low = forwarder.low if forwarder.low is not None and not forwarder.low.ended else None
            if publisher in self._paused_publishers:
                encoding: Encoding = "off"
            else:
                spotlight = publisher in self._spotlight
                encoding = slot_encoding(
                    level=level,
                    spotlight=spotlight,
                    tiles_visible=self._tiles_visible,
                    has_low=low is not None,
                )
                if encoding == "off" and (
                    slot_encoding(
                        level=FULL,
                        spotlight=spotlight,
                        tiles_visible=self._tiles_visible,
                        has_low=low is not None,
                    )
                    != "off"
                ):
                    paused_by_link += 1
            sender = sub.sender
            if encoding == "off":
                sender.set_paused(True)
                continue
            sender.set_source(low if encoding == "low" and low is not None else forwarder)
            sender.set_paused(False)
        reported = (level, paused_by_link, capped)
        if reported != self._reported:
            self._reported = reported
            logger.info(
                "%s: link %s (%s), video paused for %d",
                self._log,
                LEVEL_NAMES[level],
                "control room cap" if capped else self._quality.reason or "start",
                paused_by_link,
            )
            if self._on_quality is not None:
                self._on_quality(LEVEL_NAMES[level], paused_by_link, capped)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _is_closing(pc: RTCPeerConnection) -> bool:
    # signalingState turns "closed" as soon as close() starts; connectionState
    # only when it ends.
    return pc.signalingState == "closed" or pc.connectionState in _TERMINAL_STATES


def _describe_offer(sdp_text: str) -> tuple[_OfferedMedia, ...]:
    description = aiortc_sdp.SessionDescription.parse(sdp_text)
    return tuple(
        _OfferedMedia(
            mid=m.rtp.muxId or "",
            kind=m.kind,
            payload_types=frozenset(
                c.payloadType for c in m.rtp.codecs if c.payloadType is not None
            ),
            active=m.direction in ("sendonly", "sendrecv"),
        )
        for m in description.media
    )


def offer_id(sdp: str) -> str:
    """A subscriber offer's id, sent with it: a client that echoes it in its answer cannot
    have an answer to a replaced connection's offer applied to the new connection's (its
    DTLS and ICE would belong to another peer connection, and the new one never connects)."""
    return hashlib.sha256(sdp.encode()).hexdigest()[:16]
