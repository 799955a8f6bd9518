"""Fan-out of one published track's encoded RTP packets to its sinks.

A sink is anything implementing :class:`PacketSink`: a subscriber's
:class:`~server.media.forwarding_sender.ForwardingSender`, or a recorder that
muxes packets to a file. Sinks must not block: ``on_packet`` is called in the
publisher's receive path, so a sink only queues (``put_nowait`` semantics) and
does its work in its own task. A sink whose ``on_packet`` raises is logged,
detached and told ``on_forwarder_ended()``; the other sinks (and the
publisher's connection) carry on. A sink that needs a keyframe (joining, after
dropping packets) calls :meth:`TrackForwarder.request_keyframe`; requests are
coalesced into at most one PLI to the publisher per interval.

Recorder example::

    class Recorder:
        def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
            self.queue.put_nowait(packet)          # drop on overflow + request keyframe
        def on_forwarder_ended(self) -> None:
            self.queue.put_nowait(None)

    forwarder = room.track_forwarder(track_id)
    forwarder.attach(recorder)
    forwarder.request_keyframe()                   # start the file at a keyframe
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from . import fanout
from .active_speaker import AudioLevelMeter
from .keyframes import keyframe_detector, vp8_keyframe_size
from .rtp_header import audio_level_byte

logger = logging.getLogger(__name__)


#: The clock read once per received packet (a module global so that tests can count reads).
_wall_clock = time.time
#: The speaker detector's clock (an audio packet's level is timed by it).
_level_clock = time.monotonic
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970), and one NTP second.
_NTP_UNIX_OFFSET = 2_208_988_800
_NTP_ONE_SECOND = 1 << 32


class PacketSink(Protocol):
    """A consumer of a track's encoded packets (subscriber sender, recorder)."""

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        """Take one packet without blocking; ``packet`` must not be modified."""
        ...

    def on_forwarder_ended(self) -> None:
        """The published track ended; no more packets will come."""
        ...


PliSender = Callable[[int], Coroutine[Any, Any, None]]


async def _no_pli(ssrc: int) -> None:
    return None


class TrackForwarder:
    """One published track: receives its packets from the tap, feeds every sink."""

    def __init__(
        self,
        *,
        track_id: str,
        participant_id: str,
        kind: str,
        codec: RTCRtpCodecParameters,
        send_pli: PliSender,
        keyframe_interval: float = 0.5,
        audio_level: AudioLevelMeter | None = None,
    ) -> None:
        self.track_id = track_id
        self.participant_id = participant_id
        self.kind = kind
        self.codec = codec
        self._send_pli = send_pli
        self._keyframe_interval = keyframe_interval
        #: The publisher's level meter (the room's speaker detector reads it), fed the
        #: RFC 6464 level of every audio packet.
        self._audio_level = audio_level
        self._is_keyframe = keyframe_detector(codec.name)
        self._is_video = kind == "video"
        self._is_vp8 = codec.name.lower() == "vp8"
        #: Per-packet facts every sink shares, set before the sinks are called:
        #: the arrival time (wall clock, seconds; the one clock read per packet),
        #: the same as a 64-bit NTP timestamp (for sender reports), and the
        #: outgoing header-extension value (abs-send-time for video, the RFC 6464
        #: audio-level byte for audio).
        self.arrival_time = 0.0
        self.arrival_ntp = 0
        self.extension_value = 0
        self._sinks: tuple[PacketSink, ...] = ()
        # The sinks with a compiled fan-out stream (subscribers' senders), their
        # streams in the same order, and the other sinks (recorders, tests).
        self._fast_sinks: tuple[PacketSink, ...] = ()
        self._fast_streams: tuple[Any, ...] = ()
        self._other_sinks: tuple[PacketSink, ...] = ()
        self._ended = False
        self._source_ssrc: int | None = None
        self._last_pli = float("-inf")
        self._pli_pending = False
        self._pli_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Counters, exposed through stats.
        self.packets_received = 0
        #: Packets the publisher sent as far as the sequence numbers received tell
        #: (per SSRC, unwrapped). Beside ``packets_received`` it gives what never reached
        #: us and so was never forwarded: the publisher's uplink loss as subscribers see it
        #: (after retransmissions, which are counted when they arrive).
        self.packets_expected = 0
        self._highest_seq = 0
        self.keyframes_received = 0
        self.keyframe_requests = 0
        self.plis_sent = 0
        self.sinks_failed = 0
        #: Video frames received (RTP marker bits: the last packet of each frame).
        self.frames_received = 0
        #: (width, height) of the last VP8 keyframe (None until one, and for H.264).
        self.frame_size: tuple[int, int] | None = None
        #: The same camera's low encoding, when the publisher sends one (a second track).
        self.low: TrackForwarder | None = None
        #: True for a low encoding: it is a source for subscribers' slots, not a track.
        self.is_low = False

    def __repr__(self) -> str:
        return f"TrackForwarder({self.track_id}, {self.kind}/{self.codec.name})"

    @property
    def ended(self) -> bool:
        """True once the published track has ended."""
        return self._ended

    @property
    def sinks(self) -> tuple[PacketSink, ...]:
        """The attached sinks."""
        return self._sinks

    def codec_capability(self) -> RTCRtpCodecCapability:
        """The codec a subscriber must be offered (exactly the publisher's)."""
        return RTCRtpCodecCapability(
            mimeType=self.codec.mimeType,
            clockRate=self.codec.clockRate,
            channels=self.codec.channels,
            parameters=dict(self.codec.parameters),
        )

    def attach(self, sink: PacketSink) -> None:
        """Start feeding ``sink``; an ended forwarder tells it at once."""
        if self._ended:
            sink.on_forwarder_ended()
            return
        if sink not in self._sinks:
            self._sinks = (*self._sinks, sink)
            self._split_sinks()

    def detach(self, sink: PacketSink) -> None:
        """Stop feeding ``sink`` (no-op if not attached)."""
        self._sinks = tuple(s for s in self._sinks if s is not sink)
        self._split_sinks()

    def _split_sinks(self) -> None:
        # A sink with a compiled stream (ForwardingSender.fast_stream) is fed by
        # one fanout.forward() call per packet for all of them.
        fast: list[tuple[PacketSink, Any]] = []
        other: list[PacketSink] = []
        for sink in self._sinks:
            stream = getattr(sink, "fast_stream", None)
            if stream is not None:
                fast.append((sink, stream))
            else:
                other.append(sink)
        self._fast_sinks = tuple(sink for sink, _ in fast)
        self._fast_streams = tuple(stream for _, stream in fast)
        self._other_sinks = tuple(other)

    def on_packet(self, packet: RtpPacket) -> None:
        """Called by the packet tap for every received packet."""
        if self._ended:
            return
        self.packets_received += 1
        seq = packet.sequence_number
        if packet.ssrc != self._source_ssrc:
            self._source_ssrc = packet.ssrc
            self._highest_seq = seq
            self.packets_expected += 1
        else:
            ahead = (seq - self._highest_seq) & 0xFFFF
            if ahead < 0x8000:  # newer (a late or repeated packet is already counted)
                self._highest_seq = seq
                self.packets_expected += ahead
        # One clock read per received packet, shared by every sink (see arrival_time).
        now = _wall_clock()
        self.arrival_time = now
        ntp = int((now + _NTP_UNIX_OFFSET) * _NTP_ONE_SECOND)
        self.arrival_ntp = ntp
        level = packet.extensions.audio_level
        if self._is_video:
            self.extension_value = (ntp >> 14) & 0xFFFFFF  # abs-send-time, 6.18 fixed point
            self.frames_received += packet.marker
        else:
            self.extension_value = audio_level_byte(level)
        is_keyframe = self._is_video and self._is_keyframe(packet.payload)
        if is_keyframe:
            self.keyframes_received += 1
            if self._is_vp8:
                self.frame_size = vp8_keyframe_size(packet.payload) or self.frame_size
            # This keyframe answers any request still waiting for the rate limit.
            self._pli_pending = False
            if self._pli_timer is not None:
                self._pli_timer.cancel()
                self._pli_timer = None
        elif self._pli_pending and self._pli_timer is None:
            # A request made before we knew the publisher's SSRC.
            self._fire_pli()
        if self._audio_level is not None and level is not None:
            try:
                self._audio_level.observe(level[1], _level_clock())
            except Exception:
                self._audio_level_failed()
        streams = self._fast_streams
        if streams:
            fast_sinks = self._fast_sinks
            try:
                # Sends to every subscriber in the steady state; returns those it left to us.
                pending = fanout.forward(
                    streams,
                    packet.marker,
                    packet.sequence_number,
                    packet.timestamp,
                    packet.ssrc,
                    packet.payload,
                    self.extension_value,
                    ntp,
                    now,
                )
            except Exception:
                self._fanout_failed()
                pending = None
            if pending is not None:
                self._feed([fast_sinks[i] for i in pending], packet, is_keyframe)
        self._feed(self._other_sinks, packet, is_keyframe)

    # The compiled ingest (server/media/_ingest.c, forward_steady) repeats on_packet's
    # steady state -- no keyframe, no keyframe request waiting, no sink without a
    # compiled stream -- on this object's attributes, and calls these for the rest.

    def _audio_level_failed(self, exc: BaseException | None = None) -> None:
        logger.error("%r: audio level meter failed; disabled", self, exc_info=exc if exc else True)
        self._audio_level = None

    def _fanout_failed(
        self, exc: BaseException | None = None, packet: RtpPacket | None = None
    ) -> None:
        # Not expected (bad argument types); the Python path can do it all. With a
        # packet (from the compiled ingest), every sink gets that packet now.
        logger.error(
            "%r: compiled fan-out failed; Python path from now on",
            self,
            exc_info=exc if exc else True,
        )
        self._fast_sinks, self._fast_streams = (), ()
        self._other_sinks = self._sinks
        if packet is not None:
            self._feed(self._other_sinks, packet, False)

    def _feed_pending(
        self, fast_sinks: tuple[PacketSink, ...], pending: list[int], packet: RtpPacket
    ) -> None:
        # The subscribers the compiled fan-out handed back (the packet is no keyframe).
        self._feed([fast_sinks[i] for i in pending], packet, False)

    def _feed(self, sinks: Iterable[PacketSink], packet: RtpPacket, is_keyframe: bool) -> None:
        for sink in sinks:
            try:
                sink.on_packet(packet, is_keyframe)
            except Exception:
                # This runs inside aiortc's receive loop: an exception escaping
                # here would close the publisher's transport for everyone.
                self._sink_failed(sink)

    def _sink_failed(self, sink: PacketSink) -> None:
        """Detach a sink whose ``on_packet`` raised; it is told the stream ended."""
        logger.exception("%r: sink %r failed; detached", self, sink)
        self.detach(sink)
        self.sinks_failed += 1
        try:
            sink.on_forwarder_ended()  # so that it stops waiting (a recorder closes its file)
        except Exception:
            logger.debug("%r: failed sink %r also failed on end", self, sink, exc_info=True)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per interval (coalesced)."""
        if self._ended or self.kind != "video":
            return
        self.keyframe_requests += 1
        self._pli_pending = True
        if self._pli_timer is not None:
            return  # already scheduled: this request rides along
        wait = self._last_pli + self._keyframe_interval - time.monotonic()
        if wait <= 0:
            self._fire_pli()
        else:
            self._pli_timer = asyncio.get_running_loop().call_later(wait, self._fire_pli)

    def _fire_pli(self) -> None:
        self._pli_timer = None
        if self._ended or not self._pli_pending or self._source_ssrc is None:
            return  # without the SSRC, on_packet fires it when the first packet comes
        self._pli_pending = False
        self._last_pli = time.monotonic()
        self.plis_sent += 1
        task = asyncio.create_task(self._send_pli(self._source_ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("%r: PLI failed: %s", self, task.exception())

    def end(self) -> None:
        """The published track is gone: tell every sink, drop timers (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for task in self._tasks:
            task.cancel()
        # Subscribers' senders may outlive us (inactive m-lines): drop the
        # references that lead back to the publisher's receiver and the room.
        self._send_pli = _no_pli
        self._audio_level = None
        sinks, self._sinks = self._sinks, ()
        self._split_sinks()
        for sink in sinks:
            try:
                sink.on_forwarder_ended()
            except Exception:
                logger.exception("%r: sink failed on end", self)
        logger.debug("%r ended", self)
