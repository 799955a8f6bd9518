"""Per-participant media statistics of an owned room, for the control room.

The control room (`signaling/control.py`) asks each room's owner for these
with an admin request (`media_stats`) every couple of seconds while an
operator watches. Everything is read from what already exists: the peer
connections' counters (bytes, packets lost, the subscribers' receiver reports:
server/media/connection_counters.py, the figures aiortc's `getStats()` gives,
without its task per track), the forwarders' counters (frames, the last
keyframe's size) and the speaker detector's levels. Rates are differences
between two reads, kept here per participant and peer connection; nothing is
added to the forwarding path. The read yields to the event loop after each
participant, so that a large room's read never holds the packets of the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from server.media import MediaError
from server.media.aiortc_internals import selected_candidate_types
from server.media.connection_counters import read_counters
from server.media.forwarding_sender import ForwardingSender
from server.rooms.owned_room import OwnedRoom

logger = logging.getLogger(__name__)

#: Counters older than this are not used for a rate (the operator left and came back).
MAX_RATE_AGE = 10.0
#: A rate is measured over at least this long. Every node's control room asks the owner,
#: at nearly the same moment: a second read right after the first gets the first's rate,
#: not a rate over a few milliseconds (which reads as zero).
MIN_RATE_WINDOW = 1.0


@dataclass
class _Reading:
    at: float
    value: float
    rate: float | None = None


class MediaStatsReader:
    """Reads rooms' media statistics and turns counters into rates (one per node)."""

    def __init__(self) -> None:
        self._last: dict[Hashable, _Reading] = {}

    def _rate(self, key: Hashable, value: float, now: float, seen: set[Hashable]) -> float | None:
        """Change per second of `value` since the last read of `key` (None on a first read)."""
        seen.add(key)
        last = self._last.get(key)
        if last is None or now - last.at > MAX_RATE_AGE or value < last.value:
            self._last[key] = _Reading(now, value)
            return None
        if now - last.at < MIN_RATE_WINDOW:
            return last.rate
        rate = (value - last.value) / (now - last.at)
        self._last[key] = _Reading(now, value, rate)
        return rate

    async def read(self, room: OwnedRoom) -> dict[str, Any]:
        """The room's participants with their media, as the control room shows them."""
        media = room.media.media_room
        now = time.monotonic()
        seen: set[Hashable] = set()
        levels = media.audio_levels() if media is not None else {}
        participants = []
        # A copy: the read yields, and participants may come and go meanwhile.
        for p in list(room.participants.values()):
            entry: dict[str, Any] = {
                "identity": p.identity,
                "name": p.name,
                "venue": p.venue,
                "role": p.role.value,
                "node": p.node,
                "audio_muted": p.audio_muted,
                "video_muted": p.video_muted,
                "audio_level": levels.get(p.identity),
            }
            if media is not None:
                # MediaError: joined, media not set up yet.
                with contextlib.suppress(MediaError):
                    found = self._participant(room.room_id, media, p.identity, now, seen)
                    entry.update(found)
                await asyncio.sleep(0)  # the next participant in the loop's next turn
            participants.append(entry)
        # Forget connections gone from this room, and rooms no longer read.
        for key, reading in list(self._last.items()):
            gone = key[0] == room.room_id and key not in seen  # type: ignore[index]
            if gone or now - reading.at > 3 * MAX_RATE_AGE:
                del self._last[key]
        live = room.live
        return {
            "room": room.room_id,
            "status": live.status,
            "floor": live.floor.identity if live.floor else None,
            "pinned": live.pinned,
            "last_n": media.last_n if media is not None else None,
            # The control room's caps per venue (lower a venue's quality), until lifted.
            "venue_quality": {
                venue: cap.model_dump() for venue, cap in room.media.venue_caps.items()
            },
            "participants": participants,
        }

    def _participant(
        self, room_id: str, media: Any, identity: str, now: float, seen: set[Hashable]
    ) -> dict[str, Any]:
        states = media.connection_states(identity)
        publish_pc, subscribe_pc = media.participant_connections(identity)
        out: dict[str, Any] = {
            "publish_state": states["publish"],
            "subscribe_state": states["subscribe"],
            "candidate": None,
            "send_kbps": None,
            "receive_kbps": None,
            "loss": None,
            "downstream_loss": None,
            "rtt_ms": None,
            "width": None,
            "height": None,
            "fps": None,
            "paused_videos": 0,
            "video_level": None,
            "low_videos": 0,
            "receive_cap": "full",
            "send_cap": None,
        }
        for pc in (publish_pc, subscribe_pc):
            if pc is not None and out["candidate"] is None:
                types = selected_candidate_types(pc)
                if types is not None:
                    # The participant's side of the pair: `relay` when it goes through a
                    # TURN relay, `host` straight from its own address. The browser lists
                    # every gathered candidate in its SDP (media.js waits for gathering),
                    # and the server reads the BUNDLE transport's ones
                    # (server/media/bundle_candidates.py). `prflx` remains for an address
                    # it never signalled: an mDNS host name the server could not resolve,
                    # or a NAT mapping other than its srflx one: a direct path, since
                    # relay addresses are always signalled (docs/operations.md).
                    out["candidate"] = types[1]
        key = (room_id, identity)
        # Upload: the transport's bytes in (SRTP and RTCP included); download: RTP payload.
        if publish_pc is not None:
            counters = read_counters(publish_pc)
            in_bytes = float(sum(bytes_in for bytes_in, _ in counters.transport_bytes.values()))
            received = float(sum(s.packets_received for s in counters.inbound))
            lost = float(sum(max(0, s.packets_lost) for s in counters.inbound))
            rate = self._rate((*key, id(publish_pc), "in"), in_bytes, now, seen)
            out["send_kbps"] = None if rate is None else round(rate * 8 / 1000, 1)
            d_received = self._rate((*key, id(publish_pc), "pkts"), received, now, seen)
            d_lost = self._rate((*key, id(publish_pc), "lost"), lost, now, seen)
            if d_received is not None and d_lost is not None and d_received + d_lost > 0:
                out["loss"] = round(d_lost / (d_received + d_lost), 4)
        if subscribe_pc is not None:
            counters = read_counters(subscribe_pc)
            # The forwarding path sends beside the transport's own counters; the
            # senders count what they forwarded (RTP payload bytes).
            out_bytes = float(counters.payload_bytes_sent)
            losses = [r.fraction_lost / 256 for r in counters.reports]
            rtts = [r.round_trip_time for r in counters.reports if r.round_trip_time is not None]
            rate = self._rate((*key, id(subscribe_pc), "out"), out_bytes, now, seen)
            out["receive_kbps"] = None if rate is None else round(rate * 8 / 1000, 1)
            if losses:
                out["downstream_loss"] = round(max(losses), 4)
            if rtts:
                out["rtt_ms"] = round(max(rtts) * 1000, 1)
            out["paused_videos"] = sum(
                1 for s in subscribe_pc.getSenders() if isinstance(s, ForwardingSender) and s.paused
            )
        # Quality per receiver: its link level, and how many cameras it gets in low quality.
        level, slots = media.video_quality(identity)
        out["video_level"] = level
        out["low_videos"] = sum(1 for encoding in slots.values() if encoding == "low")
        receive_cap, send_cap = media.quality_cap(identity)
        out["receive_cap"] = receive_cap
        out["send_cap"] = send_cap
        for forwarder in media.participant_forwarders(identity):
            if forwarder.kind != "video":
                continue
            fps = self._rate((*key, id(forwarder), "frames"), forwarder.frames_received, now, seen)
            if fps is not None:
                out["fps"] = round(fps, 1)
            if forwarder.frame_size is not None:
                out["width"], out["height"] = forwarder.frame_size
        return out
