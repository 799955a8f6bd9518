"""The RTCRtpSender that sends one forwarded track to one subscriber.

It is a :class:`~server.media.track_forwarder.PacketSink`: the forwarder calls
:meth:`ForwardingSender.on_packet` for each packet of the published track, and
the sender rewrites the header (SSRC, payload type, sequence number,
timestamp, header extensions), encrypts and sends it right there, in the
publisher's receive path. There is no per-subscriber task or queue per packet:
a UDP ``sendto`` does not wait, so neither does forwarding.

The one place a send could wait is a full socket buffer (the kernel refused
the datagram and asyncio keeps it for later). That buffer is the bounded
queue: once it holds more than ``queue_size`` packets' worth of bytes, video
is dropped until the next keyframe (a partial frame is useless; one is
requested) and audio packets are dropped. A slow or dead subscriber therefore
only loses its own packets.

Video starts at a keyframe, and restarts at one after an overflow or after a
pause (last-N policy). aiortc's RTCP loop keeps sending sender reports from
the channel's counters and answers NACKs from its history (see
:class:`~server.media.aiortc_internals.RtpSendChannel`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from . import fanout
from .aiortc_internals import HookedRtpSender, RtpSendChannel, sender_ssrc
from .rtp_header import OutgoingHeader
from .rtp_rewriter import RtpRewriter
from .track_forwarder import TrackForwarder

if TYPE_CHECKING:
    from .fanout import CompiledStream

logger = logging.getLogger(__name__)

#: Fewer packets than this between two receiver reports tell too little of the
#: publisher's uplink loss: the last measure stands.
_UPSTREAM_MIN_PACKETS = 5
#: Bytes of one packet, for turning a queue size in packets into a buffer size.
_PACKET_BYTES = 1200

#: What the receiver reports about its link: (fraction lost 0..1, jitter in seconds).
ReportHandler = Callable[[float, float], None]
#: The receiver's REMB estimate, bit/s.
RembHandler = Callable[[int], None]
#: Told that a switch of encoding completed (the target's keyframe went out).
SwitchHandler = Callable[[], None]


class _SwitchProbe:
    """Watches the encoding a sender switches to, until that encoding's next keyframe.

    The sender keeps forwarding its current encoding meanwhile; at the target's
    keyframe it moves over (its decoder sees one stream: the rewriter makes
    sequence numbers and timestamps continuous across the change).
    """

    __slots__ = ("sender", "target")

    def __init__(self, sender: ForwardingSender, target: TrackForwarder) -> None:
        self.sender = sender
        self.target = target

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        if is_keyframe:
            self.sender._switch_now(self, packet)
        else:
            self.sender._maybe_request_keyframe_from(self.target)

    def on_forwarder_ended(self) -> None:
        self.sender._probe_ended(self)


class ForwardingSender(HookedRtpSender):
    """Sends the packets of one :class:`TrackForwarder` to one subscriber."""

    def __init__(
        self,
        forwarder: TrackForwarder,
        transport: RTCDtlsTransport,
        *,
        queue_size: int,
        keyframe_retry_interval: float = 1.0,
        receiver_keyframe_interval: float = 1.0,
    ) -> None:
        super().__init__(forwarder.kind, transport)
        self.track_id = forwarder.track_id
        # Dropped by release(): an inactive m-line keeps its sender for the
        # lifetime of the subscribe connection, and must not keep the publisher's
        # forwarder (and through it the publisher's peer connection) alive.
        self._forwarder: TrackForwarder | None = forwarder
        #: The encoding forwarded now: the track's own forwarder, or its low encoding.
        self._source: TrackForwarder | None = forwarder
        self._probe: _SwitchProbe | None = None
        self._receiver_keyframe_interval = receiver_keyframe_interval
        self._last_receiver_keyframe_request = float("-inf")
        #: Called with what the receiver reports about its link (set by the connection).
        self.on_report: ReportHandler | None = None
        self.on_remb: RembHandler | None = None
        self.on_switched: SwitchHandler | None = None
        # After a pause: the outgoing sequence number of the first packet sent again (set
        # once it is sent), until the receiver's first report that has seen it.
        self._resume_pending = False
        self._resume_seq: int | None = None
        #: Receiver reports not judged (the first one after a pause).
        self.reports_skipped = 0
        #: Receiver reports not judged because no packet reached the receiver since its
        #: previous one (a paused stream: see _handle_rtcp_packet).
        self.reports_stale = 0
        # The source and its expected and received counts at the receiver's previous
        # report: what the publisher's uplink lost in between is no fault of this
        # receiver's link. Attributes, not a tuple made per report (see
        # HookedRtpSender.report_time: what lives a second is what young GCs walk).
        self._upstream_source: TrackForwarder | None = None
        self._upstream_expected = 0
        self._upstream_received = 0
        self._upstream_loss = 0.0
        # The extended highest sequence number of the receiver's previous report: where
        # the packets its next report counts start.
        self._report_highest: int | None = None
        # The last report's loss as the receiver reported it, and the share of it that
        # never reached us from the publisher (last_report_loss).
        self._reported_loss = 0.0
        self._reported_upstream_loss = 0.0
        self._is_video = forwarder.kind == "video"
        self._max_buffered = queue_size * _PACKET_BYTES
        self._paused = False
        self._congested = False
        self._ended = False
        self._stopped = asyncio.Event()
        self._awaiting_keyframe = self._is_video
        self._resync_next = True
        self._last_source_ssrc: int | None = None
        self._keyframe_retry_interval = keyframe_retry_interval
        self._last_keyframe_request = float("-inf")
        self._running = False
        # Set by run_forwarding(): the per-packet state. With the compiled
        # fan-out, the stream is the rewriter too (one state for both paths).
        self._rewriter: fanout.Rewriter | None = None
        self._header: OutgoingHeader | None = None
        self._stream: CompiledStream | None = None
        # Counters (read by stats and the metrics collector).
        self._packets_queued = 0
        self.packets_dropped = 0
        self.overflows = 0
        #: Receiver keyframe requests (PLI/FIR) passed on, and those refused by the
        #: per-receiver rate limit.
        self.keyframe_requests_passed = 0
        self.keyframe_requests_limited = 0
        #: Completed switches between encodings.
        self.switches = 0

    def __repr__(self) -> str:
        return f"ForwardingSender({self.track_id} ssrc={sender_ssrc(self)})"

    @property
    def paused(self) -> bool:
        """True while forwarding is suspended (policy), without renegotiation."""
        return self._paused

    @property
    def packets_queued(self) -> int:
        """Packets handed to the transport (by this sender or the compiled fan-out)."""
        stream = self._stream
        return self._packets_queued + (0 if stream is None else stream.fast_sent)

    @property
    def fast_stream(self) -> CompiledStream | None:
        """The compiled fan-out's stream for this sender (None: the Python path only).

        :class:`TrackForwarder` sends through it with one call for all its
        subscribers, and calls :meth:`on_packet` only for the packets it hands back.
        """
        return self._stream

    @property
    def running(self) -> bool:
        """True while the sender forwards (negotiated and connected)."""
        return self._running

    @property
    def source(self) -> TrackForwarder | None:
        """The encoding forwarded now (None once released)."""
        return self._source

    @property
    def last_report_loss(self) -> tuple[float, float]:
        """The last report's loss: (as the receiver reported it, the share of it that
        never reached us from the publisher). Stats and tests."""
        return self._reported_loss, self._reported_upstream_loss

    @property
    def switching_to(self) -> TrackForwarder | None:
        """The encoding a switch waits for a keyframe of, if any."""
        return self._probe.target if self._probe is not None else None

    def release(self) -> None:
        """Forget the forwarder and sent-packet history (after the sender is stopped)."""
        forwarder, self._forwarder = self._forwarder, None
        source, self._source = self._source, None
        self._upstream_source = None
        self._report_highest = None
        self._cancel_probe()
        for f in (forwarder, source):
            if f is not None:
                f.detach(self)
        self._end()
        if self.channel is not None:
            self.channel.clear()

    def set_paused(self, paused: bool) -> None:
        """Suspend or resume forwarding; video resumes at a keyframe it requests."""
        if paused == self._paused:
            return
        self._paused = paused
        if not paused:
            self._restart()
            self._resume_pending = True
        self._update_fast_path()
        logger.debug("%r paused=%s", self, paused)

    def set_source(self, target: TrackForwarder) -> None:
        """Forward ``target`` (the track's high or low encoding) from its next keyframe.

        Until then the current encoding goes on; while paused or not yet
        running, the change is immediate (resuming starts at a keyframe anyway).
        """
        if self._ended or target.ended:
            return
        if self._probe is not None and self._probe.target is target:
            return
        self._cancel_probe()
        if target is self._source:
            return
        if not self._running or self._paused or self._awaiting_keyframe:
            self._move_to(target)
            if self._running and not self._paused:
                self._restart()
            return
        probe = _SwitchProbe(self, target)
        self._probe = probe
        target.attach(probe)
        self._request_keyframe_from(target)

    # --- PacketSink ---------------------------------------------------------------

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        """Rewrite and send one packet now (never waits); see the module docstring."""
        self._forward(packet, is_keyframe)
        if self._stream is not None:
            self._update_fast_path()

    def _forward(self, packet: RtpPacket, is_keyframe: bool) -> None:
        # The reference path: every rule. The compiled fan-out repeats only its
        # steady state (no gating pending, the newest packet of the same source).
        if self._paused or not self._running:
            return
        if self._congested and not self._drained():
            self.packets_dropped += 1
            return
        if self._is_video:
            if packet.ssrc != self._last_source_ssrc:
                # A new publisher stream: its first decodable packet is a keyframe.
                if self._last_source_ssrc is not None:
                    self._awaiting_keyframe = True
                self._last_source_ssrc = packet.ssrc
            if self._awaiting_keyframe:
                if not is_keyframe:
                    self.packets_dropped += 1
                    self._maybe_request_keyframe()
                    return
                self._awaiting_keyframe = False
                self._resync_next = True
        forwarder = self._source
        rewriter = self._rewriter
        header = self._header
        channel = self.channel
        if forwarder is None or rewriter is None or header is None or channel is None:
            return
        # One clock read per received packet, made by the forwarder for all its sinks.
        now = forwarder.arrival_time
        resync = self._resync_next
        if resync:
            self._resync_next = False
            rewriter.resync(packet, now)
        seq = rewriter.map_sequence(packet, now)
        if seq < 0:
            return
        if resync and self._resume_pending:
            self._resume_pending = False
            self._resume_seq = seq
        timestamp = (packet.timestamp + rewriter.ts_offset) & 0xFFFFFFFF
        payload = packet.payload
        header_bytes = bytes(header.build(packet.marker, seq, timestamp, forwarder.extension_value))
        try:
            buffered = channel.send(header_bytes, payload)
        except ConnectionError:
            # The subscriber's transport closed: aiortc stops this sender soon.
            self._end()
            return
        except ValueError:
            # Too long to encrypt (a publisher sent an oversized packet): skip it.
            self.packets_dropped += 1
            return
        channel.last_ntp_time = forwarder.arrival_ntp
        channel.last_rtp_timestamp = timestamp
        self._packets_queued += 1
        if buffered > self._max_buffered:
            self._overflow()

    def on_forwarder_ended(self) -> None:
        """The published track ended: stop forwarding (the room removes the m-line).

        If only its low encoding ended (the publisher stopped sending it), the
        sender goes back to the track's own encoding instead.
        """
        track = self._forwarder
        if track is not None and not track.ended:
            if self._source is not None and self._source.ended:
                self._move_to(track)
                if self._running and not self._paused:
                    self._restart()
            return
        self._end()

    # --- HookedRtpSender ----------------------------------------------------------

    def on_keyframe_request(self) -> None:
        """Subscriber PLI/FIR: pass it on for the encoding it receives, at most once
        per ``receiver_keyframe_interval`` for this receiver (a lossy receiver asking
        again and again must not make the publisher send keyframes for everyone)."""
        now = time.monotonic()
        if now - self._last_receiver_keyframe_request < self._receiver_keyframe_interval:
            self.keyframe_requests_limited += 1
            return
        self._last_receiver_keyframe_request = now
        self.keyframe_requests_passed += 1
        if self._source is not None:
            self._source.request_keyframe()

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        await super()._handle_rtcp_packet(packet)
        # What the receiver says about its link feeds its level (per report, not per packet).
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            on_report = self.on_report
            channel = self.channel
            if on_report is None or channel is None:
                return
            for report in packet.reports:
                if report.ssrc == channel.ssrc:
                    if report.highest_sequence == self._report_highest:
                        # Nothing reached the receiver since its previous report (we
                        # paused the stream, or its link lost everything): the block
                        # says nothing of the link now. aiortc's receiver goes on
                        # reporting every stream it ever got, with the jitter of its
                        # last packet frozen (libwebrtc for 8 s): judged, a jitter
                        # frozen high in a burst held the receiver below its level
                        # for good, every paused stream saying so each second.
                        self.reports_stale += 1
                        continue
                    link_loss = self._link_loss(report.fraction_lost / 256, report.highest_sequence)
                    if self._covers_resume(report.highest_sequence):
                        # Its interval counts as lost what the link lost just before a
                        # pause (the receiver learns of those packets only from the
                        # first one after it): that was the level left, not this one.
                        self.reports_skipped += 1
                        continue
                    on_report(link_loss, report.jitter / channel.clock_rate)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            on_remb = self.on_remb
            if on_remb is None:
                return
            try:
                bitrate, _ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            on_remb(bitrate)

    def _covers_resume(self, highest_sequence: int) -> bool:
        """True for the first receiver report that has seen the stream resumed after a
        pause (its highest sequence number at or past the first one sent after it)."""
        resume_seq = self._resume_seq
        if resume_seq is None or (highest_sequence - resume_seq) & 0xFFFF >= 0x8000:
            return False
        self._resume_seq = None
        return True

    def _link_loss(self, reported: float, highest_sequence: int) -> float:
        """The share of what we sent that the receiver's link lost, from the share it
        reports missing: packets the publisher's uplink lost were never sent (their
        sequence numbers are skipped, not reused), and must not step this receiver down
        (a lossy venue would lower what everyone else receives).

        The publisher's loss is counted over the very packets the report counts (the
        sequence numbers since the receiver's previous report that we never sent).
        Where the sent history cannot tell (the first report, or a report so late that
        newer packets took the history's slots), it is measured over the time between
        two reports, which on a busy server or a slow link covers other packets than
        the report's: an interval with too few packets to tell (two reports handled
        back to back) keeps the last measure and counts on into the next, and so does
        a switch of encoding (the same uplink).
        """
        source = self._source
        if source is None:
            return reported
        if self._upstream_source is not source:
            self._mark_upstream(source)
        else:
            expected = source.packets_expected - self._upstream_expected
            if expected >= _UPSTREAM_MIN_PACKETS:
                received = source.packets_received - self._upstream_received
                self._upstream_loss = min(max(1.0 - received / expected, 0.0), 1.0)
                self._mark_upstream(source)
        upstream = self._upstream_loss
        previous, self._report_highest = self._report_highest, highest_sequence
        channel = self.channel
        if previous is not None and channel is not None and highest_sequence > previous:
            sent, known = channel.sent_among(previous + 1, highest_sequence)
            if known >= _UPSTREAM_MIN_PACKETS:
                upstream = 1.0 - sent / known
        self._reported_loss = reported
        self._reported_upstream_loss = upstream
        if upstream >= 1.0:
            return 0.0  # nothing came to forward: the receiver's link is not judged
        # loss_total = 1 - (1 - upstream)(1 - link)
        return max(0.0, (reported - upstream) / (1.0 - upstream))

    def _mark_upstream(self, source: TrackForwarder) -> None:
        # Where the next measure of the publisher's loss starts: when forwarding starts
        # from a source, so that the receiver's first report is judged too.
        self._upstream_source = source
        self._upstream_expected = source.packets_expected
        self._upstream_received = source.packets_received

    async def run_forwarding(self, channel: RtpSendChannel) -> None:
        """Forward (from :meth:`on_packet`) until stopped; this task only waits."""
        forwarder = self._forwarder
        if forwarder is None or self._ended:
            return
        self.channel = channel
        self._header = OutgoingHeader(
            ssrc=channel.ssrc,
            payload_type=channel.payload_type,
            mid=channel.mid,
            extensions_map=channel.extensions_map,
            extension="abs_send_time" if self._is_video else "audio_level",
        )
        if fanout.enabled:
            stream = fanout.new_stream(
                ssrc=channel.ssrc,
                payload_type=channel.payload_type,
                clock_rate=channel.clock_rate,
                header=self._header,
            )
            channel.attach_stream(stream)
            self._rewriter = self._stream = stream
        else:
            self._rewriter = RtpRewriter(
                ssrc=channel.ssrc, payload_type=channel.payload_type, clock_rate=channel.clock_rate
            )
        self._running = True
        self._restart()
        self._update_fast_path()
        source = self._source
        if source is not None:
            self._mark_upstream(source)
            source.attach(self)
        try:
            await self._stopped.wait()
        finally:
            self._running = False
            self._cancel_probe()
            self._update_fast_path()
            for f in (forwarder, self._source):
                if f is not None:
                    f.detach(self)

    # --- internals ----------------------------------------------------------------

    def _end(self) -> None:
        self._ended = True
        self._running = False
        self._stopped.set()
        self._update_fast_path()

    def _update_fast_path(self) -> None:
        # The compiled fan-out may send for us only while no rule of _forward()
        # is pending: running, not paused, not congested (nothing buffered), not
        # waiting for a keyframe or a resync. Re-evaluated after every packet it
        # hands back and on every change of these from outside (every assignment
        # of _paused and _running is followed by this call).
        stream = self._stream
        if stream is None:
            return
        # Paused (last-N) or not running: _forward would drop every packet first thing,
        # so the fan-out drops them itself instead of handing each one back.
        stream.silent = self._paused or not self._running
        channel = self.channel
        stream.enabled = (
            self._running
            and not self._paused
            and not self._congested
            and not self._awaiting_keyframe
            and not self._resync_next
            and channel is not None
            and channel.buffered_bytes() == 0
        )

    def _overflow(self) -> None:
        # The subscriber's socket buffer is full: what is sent now would wait.
        # Drop until it has drained to half (hysteresis), then video restarts at a keyframe.
        self.overflows += 1
        self._congested = True
        if self._is_video:
            self._restart()

    def _drained(self) -> bool:
        channel = self.channel
        if channel is not None and channel.buffered_bytes() > self._max_buffered // 2:
            return False
        self._congested = False
        return True

    def _restart(self) -> None:
        # (Re)start the stream: video waits for a keyframe, which we ask for now.
        self._resync_next = True
        if self._is_video:
            self._awaiting_keyframe = True
            self._request_keyframe()

    def _maybe_request_keyframe(self) -> None:
        # The PLI (or the keyframe) may have been lost: ask again now and then.
        if time.monotonic() - self._last_keyframe_request >= self._keyframe_retry_interval:
            self._request_keyframe()

    def _request_keyframe(self) -> None:
        if self._source is not None:
            self._request_keyframe_from(self._source)

    def _maybe_request_keyframe_from(self, target: TrackForwarder) -> None:
        if time.monotonic() - self._last_keyframe_request >= self._keyframe_retry_interval:
            self._request_keyframe_from(target)

    def _request_keyframe_from(self, target: TrackForwarder) -> None:
        if not self._running:
            return  # attach() at start of run_forwarding requests one
        self._last_keyframe_request = time.monotonic()
        target.request_keyframe()

    def _move_to(self, target: TrackForwarder) -> None:
        self._mark_upstream(target)
        old, self._source = self._source, target
        if self._running:
            if old is not None:
                old.detach(self)
            target.attach(self)

    def _switch_now(self, probe: _SwitchProbe, keyframe: RtpPacket) -> None:
        # Called from the target's fan-out with its keyframe: take over from here.
        if probe is not self._probe:
            return
        self._cancel_probe()
        self._move_to(probe.target)
        self.switches += 1
        # attach() does not reach the fan-out already under way: forward this packet now.
        self.on_packet(keyframe, True)
        on_switched = self.on_switched
        if on_switched is not None:
            on_switched()

    def _probe_ended(self, probe: _SwitchProbe) -> None:
        if probe is self._probe:
            self._probe = None

    def _cancel_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.target.detach(probe)
