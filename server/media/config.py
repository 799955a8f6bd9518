"""Configuration of the media layer: ICE addresses, limits and forwarding policy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from .quality_tiers import TierThresholds

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Codec names the forwarder can handle (aiortc's names, case-insensitive).
SUPPORTED_AUDIO_CODECS = ("opus", "G722", "PCMU", "PCMA")
SUPPORTED_VIDEO_CODECS = ("VP8", "H264")


@dataclass(frozen=True)
class IceAddress:
    """One local address to gather ICE candidates on.

    ``announced`` replaces ``local`` in the candidates we send (1:1 NAT, e.g. a
    cloud VM whose public address is not on any interface).
    """

    local: str
    announced: str | None = None

    def __post_init__(self) -> None:
        # Raises ValueError for anything that is not a literal IP address:
        # host names would make gathering depend on DNS.
        ipaddress.ip_address(self.local)
        if self.announced is not None:
            ipaddress.ip_address(self.announced)


@dataclass(frozen=True)
class ActiveSpeakerConfig:
    """Tuning of the active-speaker detector (levels in dBov, times in seconds)."""

    #: Time constant of the exponential smoothing of each participant's level.
    smoothing: float = 0.3
    #: A smoothed level below this is silence (-127 is digital silence, 0 is full scale).
    threshold_dbov: float = -50.0
    #: A challenger must be this many dB louder than the current speaker ...
    switch_margin_db: float = 6.0
    #: ... for this long before the active speaker changes.
    switch_hold: float = 0.5
    #: How often the detector is evaluated.
    tick_interval: float = 0.1

    def __post_init__(self) -> None:
        if self.smoothing <= 0 or self.switch_hold < 0 or self.tick_interval <= 0:
            raise ValueError("speaker timings must be positive")
        if not -127.0 <= self.threshold_dbov <= 0.0:
            raise ValueError("threshold_dbov must be within [-127, 0]")


@dataclass(frozen=True)
class MediaConfig:
    """Everything the media node needs to know; one instance per process.

    ``ice_addresses`` empty means aiortc's default gathering (all non-loopback
    interfaces). ``ice_remote_allow`` empty means any remote address is accepted;
    when set, remote candidates outside these networks (and mDNS ``.local`` names,
    which cannot be checked) are dropped from SDP and trickle alike.
    ``last_n`` of ``None`` or 0 forwards every participant's video.
    """

    ice_addresses: Sequence[IceAddress] = ()
    ice_remote_allow: Sequence[IpNetwork] = ()
    last_n: int | None = None
    max_sdp_bytes: int = 64 * 1024
    max_m_lines: int = 8
    max_candidate_bytes: int = 1024
    #: Remote candidates buffered per connection before its description is set.
    max_pending_candidates: int = 64
    #: Remote candidates trickled into one peer connection over its lifetime
    #: (queued ones included); more are refused with MediaError("bad_candidate").
    max_remote_candidates: int = 64
    #: Preference order for the codec a publisher is asked to send.
    audio_codecs: Sequence[str] = ("opus",)
    video_codecs: Sequence[str] = ("VP8", "H264")
    #: Per-subscriber queue bounds, in packets.
    video_queue_packets: int = 512
    audio_queue_packets: int = 64
    #: At most one keyframe request (PLI) per published track per this many seconds.
    keyframe_request_interval: float = 0.5
    #: A subscriber waiting for a keyframe re-requests after this many seconds.
    keyframe_retry_interval: float = 1.0
    #: A receiver's own keyframe requests (PLI/FIR) are passed on at most once per this
    #: many seconds, whatever the publisher-side coalescing does for everyone.
    receiver_keyframe_interval: float = 1.0
    #: How often each publisher's uplink loss is measured (its bitrate hint), and each
    #: receiver below full with nothing to judge its link by is looked at (a probe).
    uplink_check_interval: float = 2.0
    #: When a receiver's link level steps down and up (quality per receiver).
    tiers: TierThresholds = field(default_factory=TierThresholds)
    active_speaker: ActiveSpeakerConfig = field(default_factory=ActiveSpeakerConfig)
    #: Emit an AudioLevels event this often (seconds); None disables the event.
    audio_levels_interval: float | None = None
    #: Bound on undelivered events per room before new ones are dropped.
    max_pending_events: int = 1000
    #: A subscriber's offers are at least this many seconds apart: the room's changes
    #: within it (a burst of joins) are folded into one next offer (0: offer whenever
    #: no offer waits for its answer). A change on an idle connection goes at once.
    subscriber_offer_interval: float = 0.5
    #: Seconds after the node's last room has closed before the garbage of its sessions
    #: is collected, while no media flows (None: never; CPython's thresholds decide).
    idle_collection_delay: float | None = 2.0

    def __post_init__(self) -> None:
        if self.last_n is not None and self.last_n < 0:
            raise ValueError("last_n must be >= 0 or None")
        for name in (
            "max_sdp_bytes",
            "max_m_lines",
            "max_candidate_bytes",
            "max_pending_candidates",
            "max_remote_candidates",
            "video_queue_packets",
            "audio_queue_packets",
            "max_pending_events",
            "uplink_check_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.idle_collection_delay is not None and self.idle_collection_delay < 0:
            raise ValueError("idle_collection_delay must be >= 0 or None")
        if (
            self.keyframe_request_interval < 0
            or self.keyframe_retry_interval <= 0
            or self.receiver_keyframe_interval < 0
        ):
            raise ValueError("keyframe intervals must be positive")
        supported_audio = {c.lower() for c in SUPPORTED_AUDIO_CODECS}
        supported_video = {c.lower() for c in SUPPORTED_VIDEO_CODECS}
        if not self.audio_codecs or any(
            c.lower() not in supported_audio for c in self.audio_codecs
        ):
            raise ValueError(f"audio_codecs must be a non-empty subset of {SUPPORTED_AUDIO_CODECS}")
        if not self.video_codecs or any(
            c.lower() not in supported_video for c in self.video_codecs
        ):
            raise ValueError(f"video_codecs must be a non-empty subset of {SUPPORTED_VIDEO_CODECS}")
        if not 0 <= self.subscriber_offer_interval <= 60:
            raise ValueError("subscriber_offer_interval must be within [0, 60] seconds")
        if self.audio_levels_interval is not None and self.audio_levels_interval <= 0:
            raise ValueError("audio_levels_interval must be positive or None")
        locals_ = [a.local for a in self.ice_addresses]
        if len(set(locals_)) != len(locals_):
            raise ValueError("ice_addresses has duplicate local addresses")
        for network in self.ice_remote_allow:
            if not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise ValueError("ice_remote_allow entries must be ipaddress networks")

    @property
    def gather_addresses(self) -> tuple[str, ...] | None:
        """Addresses to gather on, or None for aiortc's default behaviour."""
        return tuple(a.local for a in self.ice_addresses) or None

    @property
    def announced_addresses(self) -> dict[str, str]:
        """Map of local address -> address to announce in our candidates."""
        return {a.local: a.announced for a in self.ice_addresses if a.announced}
