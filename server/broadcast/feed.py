"""The tracks a broadcast receives: a packet sink on each selected track's forwarder.

The broadcast is one more sink of the SFU's forwarders, like the recorder:
each selected track gets a one-byte slot, and its packets go to the worker
as ``P`` datagrams (:mod:`server.broadcast.wire`). Only the tracks the
programme shows or mixes are attached (the shown video, the host's video,
the audio), so the SFU's extra cost is one ``send`` per packet of those.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from aiortc.rtp import RtpPacket

from server.media import MediaError, MediaRoom, TrackForwarder, TrackInfo

from . import wire
from .programme import SlotRole, TrackSlot

#: Slots are one byte.
MAX_SLOTS = 256


class _Sink:
    """A PacketSink passing one track's packets to the worker."""

    def __init__(self, slot: int, send: Callable[[bytes], None]) -> None:
        self.slot = slot
        self._send = send

    def on_packet(self, packet: RtpPacket, is_keyframe: bool) -> None:
        self._send(wire.pack_packet(self.slot, packet))

    def on_forwarder_ended(self) -> None:
        """The track ended; the next programme update leaves it out."""


class BroadcastFeed:
    """The attached tracks of one room's broadcast, by track id."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._attached: dict[str, tuple[TrackForwarder, _Sink, TrackSlot]] = {}

    def select(
        self, media: MediaRoom | None, wanted: list[tuple[TrackInfo, SlotRole]]
    ) -> tuple[TrackSlot, ...]:
        """Attach to the wanted tracks, detach from the others; the slots now in use."""
        wanted_ids = {info.track_id for info, _ in wanted}
        for track_id in list(self._attached):
            forwarder, sink, _ = self._attached[track_id]
            if track_id not in wanted_ids or forwarder.ended:
                forwarder.detach(sink)
                del self._attached[track_id]
        used = {slot.slot for _, _, slot in self._attached.values()}
        for info, use in wanted:
            current = self._attached.get(info.track_id)
            if current is not None:
                if current[2].use != use:
                    self._attached[info.track_id] = (
                        current[0],
                        current[1],
                        _with_use(current[2], use),
                    )
                continue
            if media is None:
                continue
            try:
                forwarder = media.track_forwarder(info.track_id)
            except MediaError:  # the track ended between listing and attaching
                continue
            free = next((n for n in range(MAX_SLOTS) if n not in used), None)
            if free is None or forwarder.ended:
                continue
            used.add(free)
            sink = _Sink(free, self._send)
            codec = info.codec.rsplit("/", 1)[-1].lower()  # "video/VP8" -> "vp8"
            slot = TrackSlot(free, info.kind, codec, info.participant_id, use)
            forwarder.attach(sink)
            self._attached[info.track_id] = (forwarder, sink, slot)
            if info.kind == "video":
                forwarder.request_keyframe()
        return tuple(sorted((s for _, _, s in self._attached.values()), key=lambda s: s.slot))

    def request_keyframe(self, slot: int) -> None:
        """The worker needs a keyframe on `slot`."""
        for forwarder, sink, _ in self._attached.values():
            if sink.slot == slot:
                forwarder.request_keyframe()

    def detach_all(self) -> None:
        """Stop receiving anything."""
        for forwarder, sink, _ in self._attached.values():
            with contextlib.suppress(Exception):
                forwarder.detach(sink)
        self._attached.clear()


def _with_use(slot: TrackSlot, use: SlotRole) -> TrackSlot:
    return TrackSlot(slot.slot, slot.kind, slot.codec, slot.identity, use)
