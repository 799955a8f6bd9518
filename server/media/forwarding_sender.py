"""The RTCRtpSender that sends one forwarded track to one subscriber.

It is a :class:`~server.media.track_forwarder.PacketSink`: the forwarder puts
packets into a bounded per-subscriber queue without waiting, and this sender's
own RTP loop (run by aiortc once the subscriber's answer is applied and DTLS is
up) rewrites and sends them. A slow or dead subscriber therefore only loses its
own packets.

Video starts at a keyframe, and restarts at one after an overflow (the queue is
dropped whole: a partial frame is useless) or after a pause (last-N policy).
Audio drops the oldest packet on overflow.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from .aiortc_internals import HookedRtpSender, RtpSendChannel, ntp_time, sender_ssrc
from .rtp_rewriter import RtpRewriter
from .track_forwarder import TrackForwarder

logger = logging.getLogger(__name__)


class ForwardingSender(HookedRtpSender):
    """Sends the packets of one :class:`TrackForwarder` to one subscriber."""

    def __init__(
        self,
        forwarder: TrackForwarder,
        transport: RTCDtlsTransport,
        *,
        queue_size: int,
        keyframe_retry_interval: float = 1.0,
    ) -> None:
        super().__init__(forwarder.kind, transport)
        self.track_id = forwarder.track_id
        # Dropped by release(): an inactive m-line keeps its sender for the
        # lifetime of the subscribe connection, and must not keep the publisher's
        # forwarder (and through it the publisher's peer connection) alive.
        self._forwarder: TrackForwarder | None = forwarder
        self._is_video = forwarder.kind == "video"
        self._queue: collections.deque[tuple[RtpPacket, bool]] = collections.deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._paused = False
        self._ended = False
        self._awaiting_keyframe = self._is_video
        self._resync_next = True
        self._last_source_ssrc: int | None = None
        self._keyframe_retry_interval = keyframe_retry_interval
        self._last_keyframe_request = float("-inf")
        self._running = False
        # Counters.
        self.packets_queued = 0
        self.packets_dropped = 0
        self.overflows = 0
        self.channel: RtpSendChannel | None = None

    def __repr__(self) -> str:
        return f"ForwardingSender({self.track_id} ssrc={sender_ssrc(self)})"

    @property
    def paused(self) -> bool:
        """True while forwarding is suspended (policy), without renegotiation."""
        return self._paused

    @property
    def running(self) -> bool:
        """True while the RTP loop runs (negotiated and connected)."""
        return self._running

    def release(self) -> None:
        """Forget the forwarder and sent-packet history (after the sender is stopped)."""
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            forwarder.detach(self)
        self._ended = True
        self._queue.clear()
        if self.channel is not None:
            self.channel.clear()

    def set_paused(self, paused: bool) -> None:
        """Suspend or resume forwarding; video resumes at a keyframe it requests."""
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            self.packets_dropped += len(self._queue)
            self._queue.clear()
        else:
            self._restart()
        logger.debug("%r paused=%s", self, paused)

    # --- PacketSink ---------------------------------------------------------------

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        """Queue one packet (never blocks); see the module docstring for the policy."""
        if self._paused:
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
        queue = self._queue
        if len(queue) >= self._queue_size:
            self.overflows += 1
            if self._is_video:
                self.packets_dropped += len(queue) + 1
                queue.clear()
                self._restart()
                return
            queue.popleft()
            self.packets_dropped += 1
        queue.append((packet, self._resync_next))
        self._resync_next = False
        self.packets_queued += 1
        self._wakeup.set()

    def on_forwarder_ended(self) -> None:
        """The published track ended: stop forwarding (the room removes the m-line)."""
        self._ended = True
        self._queue.clear()
        self._wakeup.set()

    # --- HookedRtpSender ----------------------------------------------------------

    def on_keyframe_request(self) -> None:
        """Subscriber PLI/FIR: pass it on to the publisher (rate-limited there)."""
        if self._forwarder is not None:
            self._forwarder.request_keyframe()

    async def run_forwarding(self, channel: RtpSendChannel) -> None:
        """Rewrite and send queued packets until stopped."""
        self.channel = channel
        rewriter = RtpRewriter(
            ssrc=sender_ssrc(self),
            payload_type=channel.payload_type,
            clock_rate=channel.clock_rate,
        )
        is_video = self._is_video
        queue = self._queue
        wakeup = self._wakeup
        mid = channel.mid
        forwarder = self._forwarder
        if forwarder is None:
            return
        self._running = True
        self._restart()
        forwarder.attach(self)
        try:
            while not self._ended:
                if not queue:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                packet, resync = queue.popleft()
                if resync:
                    rewriter.resync(packet)
                out = rewriter.rewrite(packet)
                if out is None:
                    continue
                out.extensions.mid = mid
                # One clock read per packet: abs-send-time and the sender report's
                # NTP time (kept by the channel) come from the same value.
                ntp = ntp_time()
                if is_video:
                    out.extensions.abs_send_time = (ntp >> 14) & 0xFFFFFF
                else:
                    out.extensions.audio_level = packet.extensions.audio_level
                await channel.send(out, ntp)
        finally:
            self._running = False
            forwarder.detach(self)
            self._queue.clear()

    # --- internals ----------------------------------------------------------------

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
        if not self._running:
            return  # attach() at start of the loop requests one
        self._last_keyframe_request = time.monotonic()
        if self._forwarder is not None:
            self._forwarder.request_keyframe()
