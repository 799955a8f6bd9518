"""A media room: participants, the tracks they publish, and who receives what.

Rooms are separate objects: a participant can only ever receive tracks
published in its own room, and nothing looks tracks up by an id taken from
client input (subscriptions are computed here, not requested by clients).

Forwarding policy: audio goes to everyone. Video of pinned participants (the
floor holder, the host: set by the caller) always goes to everyone; with
``last_n`` set, other video is forwarded only for the ``last_n`` most recent
active speakers. Video outside the policy is *paused*, not renegotiated: the
subscriber's m-line stays, the sender stops forwarding, and on resume it
restarts at a keyframe it requests, which avoids SDP churn on every speaker
change (what production SFUs do).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aiortc import RTCPeerConnection

from .active_speaker import ActiveSpeakerDetector
from .config import MediaConfig
from .errors import MediaError
from .events import (
    ActiveSpeaker,
    AudioLevels,
    ConnectionName,
    EventCallback,
    EventDispatcher,
    MediaEvent,
    ParticipantMediaState,
    PublisherHint,
    SubscriberOffer,
    TrackInfo,
    TracksChanged,
    VideoQuality,
)
from .ice_policy import IcePolicy
from .participant import Participant, check_participant_id
from .publish_connection import PublishConnection
from .quality_tiers import LEVEL_NAMES
from .subscribe_connection import SubscribeConnection
from .track_forwarder import TrackForwarder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiverLink:
    """One participant's link as a receiver, as its quality tiers judge it (metrics)."""

    #: "full", "reduced" or "audio_only" (the control room's cap when that is lower).
    level: str
    #: Steps its link's level took so far, down and up: counted for as long as the
    #: participant is in the room, across restarts of its subscribe connection.
    steps_down: int
    steps_up: int
    #: Whether it has a subscribe connection now (it receives something).
    connected: bool
    #: Identifies what the counts belong to while the participant is in the room (a
    #: participant who rejoins counts anew under another).
    counter_key: int


@dataclass(frozen=True)
class RoomStats:
    """Counters of one room; ``decoded``/``encoded`` do not exist because nothing is."""

    participants: int
    tracks: int
    packets_received: int
    packets_sent: int
    #: RTP payload bytes sent to subscribers (what RTCP sender reports count).
    octets_sent: int
    packets_dropped: int
    keyframe_requests: int
    plis_sent: int
    subscriber_offers: int


class MediaRoom:
    """The media side of one consultation session (create with ``MediaNode.room``)."""

    def __init__(
        self,
        room_id: str,
        config: MediaConfig,
        *,
        on_event: EventCallback | None = None,
        on_closed: Callable[[MediaRoom], None] | None = None,
    ) -> None:
        self.room_id = room_id
        self.config = config
        self._policy = IcePolicy(config)
        self._on_closed = on_closed
        self._events = EventDispatcher(
            on_event, max_pending=config.max_pending_events, name=f"room {room_id}"
        )
        self._participants: dict[str, Participant] = {}
        self._join_counter = itertools.count()
        self._track_counter = itertools.count(1)
        self._pinned: frozenset[str] = frozenset()
        #: Whose camera is in the spotlight for everyone who pinned nobody.
        self._spotlight: frozenset[str] = frozenset()
        #: participant id => (whom it pinned, whether its tiles are visible).
        self._views: dict[str, tuple[str | None, bool]] = {}
        self._last_n = config.last_n
        #: The publishers whose video the last-N policy paused when it was last applied.
        self._last_n_paused: frozenset[str] | None = None
        self._speaker = ActiveSpeakerDetector(config.active_speaker, self._on_active_speaker)
        #: The tick (speaker, audio levels, uplinks) while the room has participants: a
        #: timer that re-arms itself, so that a tick costs one turn of the event loop
        #: (a task sleeping in a loop costs two: its timer, then its step).
        self._ticker: asyncio.TimerHandle | None = None
        self._next_levels = 0.0
        self._next_uplink = 0.0
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._last_tracks: tuple[TrackInfo, ...] = ()

    def __repr__(self) -> str:
        return f"MediaRoom({self.room_id!r}, {len(self._participants)} participants)"

    # --- public API ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has started."""
        return self._closed

    @property
    def participant_ids(self) -> list[str]:
        """Participants in join order."""
        return list(self._participants)

    @property
    def empty(self) -> bool:
        """True when nobody is in the room (the owner may then :meth:`close` it).

        An empty room costs no task (its speaker ticker runs only while someone
        is in it), but it stays in ``MediaNode.rooms`` until closed.
        """
        return not self._participants

    @property
    def active_speaker(self) -> str | None:
        """The current active speaker (None until someone has spoken)."""
        return self._speaker.active

    @property
    def last_n(self) -> int | None:
        """How many non-pinned video publishers are forwarded (None/0: all)."""
        return self._last_n

    @last_n.setter
    def last_n(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError("last_n must be a non-negative int or None")
        self._last_n = value
        self._apply_video_policy()

    @property
    def pinned(self) -> frozenset[str]:
        """Participants whose video is always forwarded."""
        return self._pinned

    def set_pinned(self, participant_ids: Iterable[str]) -> None:
        """Set the pinned participants (floor holder, host); unknown ids are kept for later."""
        self._pinned = frozenset(participant_ids)
        self._apply_video_policy()

    @property
    def spotlight(self) -> frozenset[str]:
        """Whose camera receivers get in the high encoding (unless they pinned someone)."""
        return self._spotlight

    def set_spotlight(self, participant_ids: Iterable[str]) -> None:
        """Set the room's spotlight (the floor holder, or whom a host featured)."""
        spotlight = frozenset(participant_ids)
        if spotlight != self._spotlight:
            self._spotlight = spotlight
            for pid in self._participants:
                self._apply_view(pid)

    def set_view(self, participant_id: str, *, pinned: str | None, tiles_visible: bool) -> None:
        """One receiver's layout: whom it pinned into its own spotlight (None: the
        room's), and whether its tile area is on screen (hidden: no tile video)."""
        self._get(participant_id)
        self._views[participant_id] = (pinned, bool(tiles_visible))
        self._apply_view(participant_id)

    def video_quality(self, participant_id: str) -> tuple[str, dict[str, str]]:
        """(link level, publisher => "high"/"low"/"off") of one receiver (control room, tests)."""
        subscribe = self._get(participant_id).subscribe
        return subscribe.quality_level, dict(subscribe.slot_encodings())

    def set_quality_cap(
        self, participant_id: str, *, receive: str = "full", send_max_bitrate: int | None = None
    ) -> None:
        """The control room's caps on one participant: its receiving level at most
        `receive` ("full": no cap; the link's own level can go lower), and its camera's
        high encoding at most `send_max_bitrate` bit/s (None: no cap; the client is told
        with a `PublisherHint`, combined with its uplink's own cap)."""
        if receive not in LEVEL_NAMES:
            raise MediaError("bad_level", f"no such level: {receive[:32]!r}")
        participant = self._get(participant_id)
        participant.subscribe.set_level_cap(LEVEL_NAMES.index(receive))
        if participant.publish.set_operator_cap(send_max_bitrate):
            self._emit(PublisherHint(participant_id, participant.publish.uplink_cap))

    def quality_cap(self, participant_id: str) -> tuple[str, int | None]:
        """The control room's caps on one participant: (receiving level, sending bit/s)."""
        participant = self._get(participant_id)
        return participant.subscribe.level_cap, participant.publish.operator_cap

    async def add_participant(self, participant_id: str, *, can_publish: bool) -> None:
        """Register a participant; its subscriber offer comes once there is something to send."""
        self._check_open()
        check_participant_id(participant_id)
        if participant_id in self._participants:
            raise MediaError("participant_exists", f"{participant_id} is already in the room")
        pid = participant_id

        def on_publish_state(state: str) -> None:
            self._emit(ParticipantMediaState(pid, "publish", state))

        def on_subscribe_state(state: str) -> None:
            self._emit(ParticipantMediaState(pid, "subscribe", state))

        def emit_offer(sdp: str) -> None:
            self._emit(SubscriberOffer(pid, sdp))

        def on_quality(level: str, paused: int, capped: bool) -> None:
            self._emit(VideoQuality(pid, level, paused, capped))

        participant = Participant(
            participant_id=pid,
            can_publish=bool(can_publish),
            publish=PublishConnection(
                participant_id=pid,
                config=self.config,
                policy=self._policy,
                can_publish=bool(can_publish),
                new_track_id=lambda kind: f"{pid}-{kind}-{next(self._track_counter)}",
                on_tracks_changed=self._tracks_changed,
                on_state=on_publish_state,
                audio_level_meter=lambda: self._speaker.meter(pid),
            ),
            subscribe=SubscribeConnection(
                participant_id=pid,
                config=self.config,
                policy=self._policy,
                emit_offer=emit_offer,
                on_state=on_subscribe_state,
                on_quality=on_quality,
            ),
            join_order=next(self._join_counter),
        )
        self._participants[pid] = participant
        self._views.pop(pid, None)
        self._apply_view(pid)
        self._start_ticker()
        logger.info("%r: %s joined (can_publish=%s)", self, pid, can_publish)
        if self._speaker.active is not None:
            # The speaker is announced when it changes, and a steady speaker does not change:
            # whoever joined after the announcement (a slow join, a busy machine) would never
            # see them highlighted. Announce again for the newcomer; to everyone else a
            # repeat changes nothing.
            self._emit(ActiveSpeaker(self._speaker.active))
        self._update_subscriptions()

    async def publish(
        self, participant_id: str, offer_sdp: str, *, low_video: Mapping[str, str] | None = None
    ) -> str:
        """Apply a publish offer (first, renegotiation, or after a failure); return the answer.

        ``low_video`` ({low mid: high mid}) names a camera's second, low encoding.
        """
        publish = self._get(participant_id).publish
        answer = await publish.handle_offer(offer_sdp, low_video)
        if publish.operator_cap is not None:
            # A hint sent before the client had a camera to cap went unused: repeat it.
            self._emit(PublisherHint(participant_id, publish.uplink_cap))
        return answer

    async def subscriber_answer(
        self, participant_id: str, answer_sdp: str, offer_id: str | None = None
    ) -> None:
        """Apply the participant's answer to the last SubscriberOffer (`offer_id`: the
        offer it answers; a stale one is refused)."""
        await self._get(participant_id).subscribe.handle_answer(answer_sdp, offer_id)

    async def add_remote_candidate(
        self, participant_id: str, connection: ConnectionName, candidate: object
    ) -> None:
        """Add a trickled ICE candidate (RTCIceCandidateInit-like mapping) to a connection."""
        participant = self._get(participant_id)
        if connection == "publish":
            await participant.publish.add_candidate(candidate)
        elif connection == "subscribe":
            await participant.subscribe.add_candidate(candidate)
        else:
            raise MediaError("bad_candidate", "connection must be 'publish' or 'subscribe'")

    async def resubscribe(self, participant_id: str) -> None:
        """Replace the participant's subscribe connection with a fresh one (new offer)."""
        await self._get(participant_id).subscribe.restart()

    async def reset_publish(self, participant_id: str) -> None:
        """Close the participant's publish connection (its tracks end); it publishes anew."""
        await self._get(participant_id).publish.reset()

    def can_publish(self, participant_id: str) -> bool:
        """Whether the participant may send media now."""
        return self._get(participant_id).publish.can_publish

    async def set_can_publish(self, participant_id: str, allowed: bool) -> None:
        """Grant or withdraw a participant's right to send media (a guest's turn on stage);
        withdrawing ends its tracks for everyone and refuses its later offers that send."""
        participant = self._get(participant_id)
        participant.can_publish = allowed
        await participant.publish.set_can_publish(allowed)
        logger.info("%r: %s can_publish=%s", self, participant_id, allowed)

    async def remove_participant(self, participant_id: str) -> None:
        """Close the participant's connections; its tracks end for everyone (idempotent)."""
        participant = self._participants.pop(participant_id, None)
        self._views.pop(participant_id, None)
        if participant is None:
            return
        logger.info("%r: %s leaving", self, participant_id)
        self._speaker.remove(participant_id)
        if not self._participants:
            self._stop_ticker()
        await participant.close()
        # close() normally reported the track change already; make sure of it.
        self._update_subscriptions()

    def tracks(self) -> tuple[TrackInfo, ...]:
        """All tracks currently published in the room."""
        return tuple(
            TrackInfo(f.track_id, f.participant_id, f.kind, f.codec.mimeType)
            for f in self._forwarders()
        )

    def track_forwarder(self, track_id: str) -> TrackForwarder:
        """The forwarder of a track in this room (for recorders: attach a PacketSink)."""
        for forwarder in self._forwarders():
            if forwarder.track_id == track_id:
                return forwarder
        raise MediaError("bad_state", f"no track {track_id!r} in this room")

    def audio_levels(self) -> dict[str, float]:
        """Smoothed audio level per participant in dBov."""
        return self._speaker.levels()

    def connection_states(self, participant_id: str) -> dict[str, str]:
        """{"publish": state, "subscribe": state} for one participant."""
        participant = self._get(participant_id)
        return {
            "publish": participant.publish.connection_state,
            "subscribe": participant.subscribe.connection_state,
        }

    def participant_connections(
        self, participant_id: str
    ) -> tuple[RTCPeerConnection | None, RTCPeerConnection | None]:
        """(publish, subscribe) peer connections of one participant (control room, tests)."""
        participant = self._get(participant_id)
        return participant.publish.peer_connection, participant.subscribe.peer_connection

    def participant_forwarders(self, participant_id: str) -> list[TrackForwarder]:
        """The live forwarders of the tracks one participant publishes (control room)."""
        return [f for f in self._forwarders() if f.participant_id == participant_id]

    def packets_received_by_participant(self) -> dict[str, int]:
        """RTP packets received so far from each participant publishing (all its tracks)."""
        received: dict[str, int] = {}
        for forwarder in self._forwarders():
            pid = forwarder.participant_id
            received[pid] = received.get(pid, 0) + forwarder.packets_received
        return received

    def receiver_links(self) -> dict[str, ReceiverLink]:
        """Each participant's link as a receiver."""
        links: dict[str, ReceiverLink] = {}
        for pid, participant in self._participants.items():
            subscribe = participant.subscribe
            down, up = subscribe.level_steps
            connected = subscribe.peer_connection is not None
            links[pid] = ReceiverLink(subscribe.quality_level, down, up, connected, id(subscribe))
        return links

    def peer_connections(self) -> list[RTCPeerConnection]:
        """Every live aiortc peer connection of the room (diagnostics and tests only)."""
        pcs = []
        for participant in self._participants.values():
            for pc in (participant.publish.peer_connection, participant.subscribe.peer_connection):
                if pc is not None:
                    pcs.append(pc)
        return pcs

    def stats(self) -> RoomStats:
        """Forwarding counters for monitoring and tests."""
        forwarders = self._forwarders()
        senders = [s for p in self._participants.values() for s in p.subscribe.senders]
        return RoomStats(
            participants=len(self._participants),
            tracks=len(forwarders),
            packets_received=sum(
                f.packets_received
                for p in self._participants.values()
                for f in p.publish.all_forwarders
            ),
            packets_sent=sum(s.channel.packets_sent for s in senders if s.channel is not None),
            octets_sent=sum(s.channel.octets_sent for s in senders if s.channel is not None),
            packets_dropped=sum(s.packets_dropped for s in senders),
            keyframe_requests=sum(f.keyframe_requests for f in forwarders),
            plis_sent=sum(f.plis_sent for f in forwarders),
            subscriber_offers=sum(p.subscribe.offers_sent for p in self._participants.values()),
        )

    async def close(self) -> None:
        """Remove every participant and stop the room's tasks (idempotent).

        The room leaves ``MediaNode.rooms`` at once (``node.get_room`` no longer
        returns it; ``node.room`` with its id creates a new room); when this
        returns, none of its tasks is left.
        """
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closed = True
        self._closing = asyncio.get_running_loop().create_future()
        try:
            on_closed, self._on_closed = self._on_closed, None
            if on_closed is not None:
                on_closed(self)
            participants = list(self._participants.values())
            self._participants.clear()
            await asyncio.gather(*(p.close_quietly() for p in participants))
            self._stop_ticker()
            await self._events.close()
            logger.info("%r closed", self)
        finally:
            self._closing.set_result(None)

    # --- internals ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("closed", f"room {self.room_id} is closed")

    def _get(self, participant_id: str) -> Participant:
        self._check_open()
        participant = self._participants.get(participant_id)
        if participant is None:
            raise MediaError("unknown_participant", f"{participant_id!r} is not in this room")
        return participant

    def _apply_view(self, participant_id: str) -> None:
        participant = self._participants.get(participant_id)
        if participant is None:
            return
        pinned, tiles_visible = self._views.get(participant_id, (None, True))
        # A pin of someone who sends no video (left, or a guest back to observer) shows the
        # room's stage until their camera is back, whether or not the client unpins.
        if pinned is not None and not any(
            f.participant_id == pinned and f.kind == "video" for f in self._forwarders()
        ):
            pinned = None
        spotlight = self._spotlight if pinned is None else frozenset((pinned,))
        participant.subscribe.set_view(spotlight, tiles_visible)

    def _emit(self, event: MediaEvent) -> None:
        self._events.emit(event)

    def _forwarders(self) -> list[TrackForwarder]:
        return [f for p in self._participants.values() for f in p.publish.forwarders if not f.ended]

    def _tracks_changed(self) -> None:
        self._update_subscriptions()

    def _update_subscriptions(self) -> None:
        if self._closed:
            return
        forwarders = self._forwarders()
        for participant in self._participants.values():
            pid = participant.participant_id
            participant.subscribe.set_tracks(f for f in forwarders if f.participant_id != pid)
        for receiver, (pinned, _) in self._views.items():
            if pinned is not None:  # the pinned camera may have come or gone
                self._apply_view(receiver)
        tracks = self.tracks()
        if tracks != self._last_tracks:
            self._last_tracks = tracks
            self._emit(TracksChanged(tracks))
        self._apply_video_policy()

    def _apply_video_policy(self, *, on_speaker_change: bool = False) -> None:
        if self._closed:
            return
        paused: frozenset[str] = frozenset()
        if self._last_n:
            publishers = list(
                dict.fromkeys(f.participant_id for f in self._forwarders() if f.kind == "video")
            )
            # Most recent active speakers first, then everyone else in join order.
            ranking = [p for p in self._speaker.recent if p in publishers]
            ranking += [p for p in publishers if p not in ranking]
            allowed = set(ranking[: self._last_n]) | self._pinned
            paused = frozenset(p for p in publishers if p not in allowed)
        if on_speaker_change and paused == self._last_n_paused:
            # A speaker already among the last N: the ranking moved, the set did not,
            # and no receiver's slots change (re-applying them is ~1-4 ms at 84
            # participants, the event loop held meanwhile, at every speaker change).
            return
        self._last_n_paused = paused
        for participant in self._participants.values():
            participant.subscribe.set_paused_publishers(paused)

    def _on_active_speaker(self, participant_id: str | None) -> None:
        self._emit(ActiveSpeaker(participant_id))
        self._apply_video_policy(on_speaker_change=True)

    def _check_links(self, now: float) -> None:
        for participant in list(self._participants.values()):
            if participant.publish.check_uplink(now):
                cap = participant.publish.uplink_cap
                self._emit(PublisherHint(participant.participant_id, cap))
            participant.subscribe.check_quiet_link(now)

    def _start_ticker(self) -> None:
        if self._ticker is None:
            cfg = self.config
            now = time.monotonic()
            self._next_levels = now + (cfg.audio_levels_interval or 0.0)
            self._next_uplink = now + cfg.uplink_check_interval
            self._ticker = asyncio.get_running_loop().call_later(
                cfg.active_speaker.tick_interval, self._tick
            )

    def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()

    def _tick(self) -> None:
        cfg = self.config
        # Re-armed first: a tick that fails is logged, and the next one comes all the same.
        self._ticker = asyncio.get_running_loop().call_later(
            cfg.active_speaker.tick_interval, self._tick
        )
        now = time.monotonic()
        try:
            if now >= self._next_uplink:
                self._next_uplink = now + cfg.uplink_check_interval
                self._check_links(now)
            self._speaker.tick(now)
            levels_every = cfg.audio_levels_interval
            if levels_every is not None and now >= self._next_levels and self._participants:
                self._next_levels = now + levels_every
                self._emit(AudioLevels(self._speaker.levels()))
        except Exception:
            logger.exception("%r: speaker tick failed", self)
