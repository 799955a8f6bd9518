"""Active-speaker detection from RFC 6464 audio levels, without decoding audio.

Each audio packet carries the sender's level (``ssrc-audio-level`` header
extension, 0 = 0 dBov ... 127 = silence). Per participant the level is smoothed
exponentially; the active speaker changes only when a challenger is above the
speech threshold and louder than the current speaker by a margin for a hold
time (hysteresis), or when the current speaker has gone quiet and someone else
has been speaking for the hold time. A silent room keeps its last speaker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from .config import ActiveSpeakerConfig

logger = logging.getLogger(__name__)

SILENCE_DBOV = -127.0
#: The RFC 6464 level of silence.
_SILENCE_LEVEL = 127
#: After this long without a packet, a participant's level decays as silence.
_STALE_AFTER = 0.1


class AudioLevelMeter:
    """One participant's smoothed audio level, fed a packet's RFC 6464 level at a time.

    The compiled ingest (server/media/_ingest.c, ``meter_observe``) runs ``observe``
    on these attributes for every audio packet it forwards, so that a packet costs
    no call into Python; the two are kept equal by a pinned source
    (aiortc_internals.COMPILED_INGEST_PORTED_SOURCES) and a test on both.
    """

    __slots__ = ("last_update", "smoothed", "smoothing")

    def __init__(self, smoothing: float, now: float) -> None:
        #: The smoothed level, in dBov (-127 .. 0).
        self.smoothed = SILENCE_DBOV
        #: time.monotonic() of the last level.
        self.last_update = now
        #: The time constant of the exponential smoothing, in seconds.
        self.smoothing = smoothing

    def observe(self, level: int, now: float) -> None:
        """Feed one RFC 6464 level (0..127, i.e. minus dBov) at ``now`` (time.monotonic())."""
        dbov = -float(min(max(level, 0), 127))
        dt = max(0.0, now - self.last_update)
        alpha = 1.0 - math.exp(-dt / self.smoothing) if dt > 0 else 0.05
        self.smoothed += (dbov - self.smoothed) * alpha
        self.last_update = now


class ActiveSpeakerDetector:
    """Picks the loudest sustained speaker of one room; calls ``on_change`` on a change."""

    def __init__(
        self,
        config: ActiveSpeakerConfig,
        on_change: Callable[[str | None], None],
    ) -> None:
        self.config = config
        self._on_change = on_change
        self._levels: dict[str, AudioLevelMeter] = {}
        self._active: str | None = None
        self._challenger: str | None = None
        self._challenger_since = 0.0
        #: Participants in order of their last time as active speaker, most recent first.
        self.recent: list[str] = []

    @property
    def active(self) -> str | None:
        """The current active speaker, or None."""
        return self._active

    def levels(self) -> dict[str, float]:
        """Smoothed level per participant, in dBov (-127 .. 0)."""
        return {pid: round(lv.smoothed, 1) for pid, lv in self._levels.items()}

    def meter(self, participant_id: str) -> AudioLevelMeter:
        """The participant's level meter (made on first use; its audio forwarder feeds it)."""
        meter = self._levels.get(participant_id)
        if meter is None:
            meter = self._levels[participant_id] = AudioLevelMeter(
                self.config.smoothing, time.monotonic()
            )
        return meter

    def observe(self, participant_id: str, level: int, now: float | None = None) -> None:
        """Feed one RFC 6464 level value (0..127, i.e. minus dBov) for a participant."""
        self.meter(participant_id).observe(level, time.monotonic() if now is None else now)

    def remove(self, participant_id: str) -> None:
        """Forget a participant; if it was the active speaker, the room has none."""
        self._levels.pop(participant_id, None)
        if participant_id in self.recent:
            self.recent.remove(participant_id)
        if self._challenger == participant_id:
            self._challenger = None
        if self._active == participant_id:
            self._set_active(None)

    def tick(self, now: float | None = None) -> None:
        """Decay silent participants and decide whether the active speaker changes."""
        now = time.monotonic() if now is None else now
        for meter in self._levels.values():
            if now - meter.last_update > _STALE_AFTER:
                meter.observe(_SILENCE_LEVEL, now)
        cfg = self.config
        speaking = {
            pid: lv.smoothed
            for pid, lv in self._levels.items()
            if lv.smoothed >= cfg.threshold_dbov
        }
        if not speaking:
            self._challenger = None
            return
        loudest = max(speaking, key=lambda pid: speaking[pid])
        if loudest == self._active:
            self._challenger = None
            return
        current = speaking.get(self._active) if self._active is not None else None
        if current is not None and speaking[loudest] < current + cfg.switch_margin_db:
            self._challenger = None
            return
        if self._challenger != loudest:
            self._challenger = loudest
            self._challenger_since = now
        if now - self._challenger_since >= cfg.switch_hold:
            self._challenger = None
            self._set_active(loudest)

    def _set_active(self, pid: str | None) -> None:
        old, self._active = self._active, pid
        logger.debug("active speaker %s -> %s", old, pid)
        if pid is not None:
            if pid in self.recent:
                self.recent.remove(pid)
            self.recent.insert(0, pid)
        self._on_change(pid)
