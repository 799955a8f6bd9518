"""A load publisher's sender: a pre-encoded clip sent through the node's own send path.

aiortc's ``RTCRtpSender`` takes a pre-encoded packet through about a dozen
Python steps per RTP packet (a task wake-up per frame, an ``RtpPacket``, the
header extensions, ``serialize``, three awaits to the socket, two clock reads
per packet). Those senders were most of the Python a load client ran besides
its receivers, and the clients, not the server, set the largest session the
test could show (with this sender, a 9 + 27 session's clients went from 75 %
to 65 % of their core; README, *Load test*). :class:`ClipSender` sends the same packets as a node's
forwarding sender sends to a subscriber: aiortc's own packetizer makes each
frame's payloads (once per frame), and one call of the compiled fan-out
(``server/media/_fanout.c``) per RTP packet patches the stream's prebuilt
header, SRTP-protects and ``sendto``s it, keeping the NACK history and the
sender-report counters. What the steady state does not cover (the first
packets, before the stream is connected; a full socket) goes through the same
stream's Python path, as in :class:`ForwardingSender`.

aiortc still negotiates the sender, starts and stops it, answers NACKs from
the history and sends its reports (:class:`HookedRtpSender`). A keyframe
request (PLI, FIR) is answered as a browser's encoder answers it: the next
frame is a keyframe, the clip's first, from which the clip plays on
(server/loadtest/clip.py).

Without the compiled fan-out the participant uses aiortc's sender with a
:class:`ClipTrack` instead (:func:`available`).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable

import av
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from server.loadtest.clip import Clip
from server.media import fanout
from server.media.aiortc_internals import HookedRtpSender, RtpSendChannel
from server.media.rtp_header import OutgoingHeader

logger = logging.getLogger(__name__)

#: The source SSRC the clip's packets carry into the stream (the stream rewrites it
#: to the negotiated one, as it rewrites a publisher's).
_CLIP_SSRC = 1
#: Frames sent at once at most when the loop woke late (a busy client): the rest are
#: skipped, as a camera's frames are while its encoder is behind.
_MAX_CATCH_UP_FRAMES = 5
_NTP_UNIX_OFFSET = 2_208_988_800
_NTP_ONE_SECOND = 1 << 32


def available() -> bool:
    """Whether :class:`ClipSender` can send (the compiled fan-out is built and on)."""
    return fanout.enabled


class ClipSender(HookedRtpSender):
    """Plays ``clip`` in a loop, in real time, on a negotiated send-only m-line.

    ``on_send(payload)``, if given, is called with each video payload just before it
    is protected (the latency probes' send log)."""

    def __init__(
        self,
        clip: Clip,
        transport: RTCDtlsTransport,
        *,
        on_send: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(clip.kind, transport)
        self.clip = clip
        #: Frames (video) or packets (audio) of the clip sent.
        self.frames_sent = 0
        #: Keyframe requests (PLI, FIR) received; each is answered at the next frame.
        self.keyframe_requests = 0
        # The clip's packet to send next (0: its keyframe).
        self._position = 0
        self._keyframe_wanted = False
        #: RTP packets sent (`compiled_sent`: those the compiled stream sent itself).
        self.packets_sent = 0
        self._on_send = on_send if clip.kind == "video" else None
        self._time_base = fractions.Fraction(1, clip.clock_rate)
        self._source_seq = 0
        self._stream: fanout.CompiledStream | None = None
        self._header: OutgoingHeader | None = None
        self._resync = True
        self._timer: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._stopped: asyncio.Future[None] | None = None
        self._codec: RTCRtpCodecParameters | None = None
        self._encoder: Encoder | None = None

    @property
    def compiled_sent(self) -> int:
        """RTP packets the compiled stream sent itself (the rest went through Python)."""
        return 0 if self._stream is None else self._stream.fast_sent

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        self._codec = codec
        await super()._run_rtp(codec)

    async def run_forwarding(self, channel: RtpSendChannel) -> None:
        """Send the clip until stopped; this task only waits."""
        self.channel = channel
        self._header = header = OutgoingHeader(
            ssrc=channel.ssrc,
            payload_type=channel.payload_type,
            mid=channel.mid,
            extensions_map=channel.extensions_map,
            # aiortc's sender marks every packet, audio too, with its send time.
            extension="abs_send_time",
        )
        stream = fanout.new_stream(
            ssrc=channel.ssrc,
            payload_type=channel.payload_type,
            clock_rate=channel.clock_rate,
            header=header,
        )
        channel.attach_stream(stream)
        self._stream = stream
        assert self._codec is not None
        # aiortc's packetizer for the negotiated codec, as its own sender uses.
        self._encoder = get_encoder(self._codec)
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._start = loop.time()
        self._timer = loop.call_at(self._start, self._tick)
        try:
            await self._stopped
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            stream.silent = True

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.clip.interval
        now = loop.time()
        due = self._start + self.frames_sent * interval
        if now - due > _MAX_CATCH_UP_FRAMES * interval:
            # Paced against the start, so that late wake-ups do not add up; but a client
            # stalled for long resumes at the present instead of sending a burst.
            skipped = int((now - due) / interval) - _MAX_CATCH_UP_FRAMES
            self.frames_sent += skipped
        try:
            while self._start + self.frames_sent * interval <= now:
                self._send_frame()
        except ConnectionError:
            # The transport closed: aiortc stops this sender soon.
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)
            return
        except Exception:
            logger.exception("clip sender failed")
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)
            return
        self._timer = loop.call_at(self._start + self.frames_sent * interval, self._tick)

    def _send_keyframe(self) -> None:
        # aiortc's sender calls this on a PLI or FIR (it would tell its encoder).
        if self.clip.kind == "video":
            self.keyframe_requests += 1
            self._keyframe_wanted = True

    def _send_frame(self) -> None:
        clip = self.clip
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self._position = 0
        packet = av.Packet(clip.packets[self._position])
        self._position = (self._position + 1) % len(clip.packets)
        packet.pts = self.frames_sent * clip.ticks_per_packet
        packet.time_base = self._time_base
        self.frames_sent += 1
        stream, channel, encoder = self._stream, self.channel, self._encoder
        assert stream is not None
        assert channel is not None
        assert encoder is not None
        payloads, timestamp = encoder.pack(packet)
        wall = time.time()
        ntp = int((wall + _NTP_UNIX_OFFSET) * _NTP_ONE_SECOND)
        send_time = (ntp >> 14) & 0xFFFFFF  # abs-send-time, 6.18 fixed point
        # The stream sends in C while nothing is pending (see ForwardingSender).
        stream.enabled = not self._resync and channel.buffered_bytes() == 0
        streams = (stream,)
        last = len(payloads) - 1
        for index, payload in enumerate(payloads):
            marker = 1 if index == last else 0
            seq = self._source_seq
            self._source_seq = (seq + 1) & 0xFFFF
            if self._on_send is not None:
                self._on_send(payload)
            pending = fanout.forward(
                streams, marker, seq, timestamp, _CLIP_SSRC, payload, send_time, ntp, wall
            )
            if pending is not None:
                self._send_python(marker, seq, timestamp, payload, send_time, ntp, wall)
            self.packets_sent += 1

    def _send_python(
        self,
        marker: int,
        seq: int,
        timestamp: int,
        payload: bytes,
        value: int,
        ntp: int,
        now: float,
    ) -> None:
        stream, channel, header = self._stream, self.channel, self._header
        assert stream is not None
        assert channel is not None
        assert header is not None
        packet = RtpPacket(
            payload_type=channel.payload_type,
            marker=marker,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=_CLIP_SSRC,
            payload=payload,
        )
        if self._resync:
            self._resync = False
            stream.resync(packet, now)
        out_seq = stream.map_sequence(packet, now)
        if out_seq < 0:
            return
        out_ts = (timestamp + stream.ts_offset) & 0xFFFFFFFF
        header_bytes = bytes(header.build(marker, out_seq, out_ts, value))
        buffered = channel.send(header_bytes, payload)
        channel.last_ntp_time = ntp
        channel.last_rtp_timestamp = out_ts
        stream.enabled = buffered == 0
